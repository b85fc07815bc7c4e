/**
 * Rollout gates on what the new version sees and says, from the telemetry of the stage's devices
 * since the rollout started:
 *
 * - maxDriftScore: the share of features (0-1) whose profile drifts from the new version's
 *   reference (the replaced version's when the new one has none), scored as the drift series is;
 * - maxOutputShift: the largest distance between an output feature of the new version and the same
 *   feature of the version it replaces, over the same period (devices still on the old version and
 *   the stage's devices before they switched): normed Wasserstein for scores, Jensen–Shannon for
 *   classes. A new version that answers differently from the one it replaces is caught even
 *   when its inputs look like the reference.
 *
 * Both wait (the stage does not pass) until `needed` devices of the stage have sent telemetry of
 * the new version; the output shift also until they have sent MIN_OUTPUT_RUNS answers.
 */
import { detectDrift, type FeatureProfile } from '@edgefleet/drift';
import type { ManifestPayload, SignedDocument } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import { FAMILY_P_VALUE, mergeWindows, parseReference, scoreBucket } from '../drift/scoring.ts';
import type { Database, RolloutsTable } from '../store/schema.ts';

/** How far before the rollout the replaced version's telemetry is read. */
const LOOKBACK_MS = 3600_000;

/**
 * Answers of the new version the output-shift gate needs before it lets a stage pass: on a first
 * window's few dozen answers no shift is significant, and a version that answers differently
 * passed its first stage (seen under load in test/drift.test.ts: caught only at the next stage).
 * A significant shift trips the gate at once, however few answers show it.
 */
export const MIN_OUTPUT_RUNS = 100;

export interface TelemetryGateSpec {
  readonly maxDriftScore?: number | undefined;
  readonly maxOutputShift?: number | undefined;
}

/** What the gates measured (a gate not measured, for want of a reference or a replaced version, is absent). */
export interface TelemetryGateReadings {
  readonly driftScore?: number | undefined;
  readonly outputShift?: number | undefined;
}

export type TelemetryGateResult =
  | { readonly verdict: 'pass'; readonly readings: TelemetryGateReadings }
  | { readonly verdict: 'wait'; readonly devicesReporting: number; readonly needed: number }
  | { readonly verdict: 'trip'; readonly reason: Record<string, unknown>; readonly readings: TelemetryGateReadings };

async function stageTelemetry(
  db: Kysely<Database>,
  row: RolloutsTable,
): Promise<{ devices: number; runs: number; merged: Map<string, FeatureProfile> }> {
  const windows = await db
    .selectFrom('telemetry_windows')
    .innerJoin('rollout_devices', (join) =>
      join.onRef('rollout_devices.device_id', '=', 'telemetry_windows.device_id').on('rollout_devices.rollout_id', '=', row.id),
    )
    .select(['telemetry_windows.body', 'telemetry_windows.device_id', 'telemetry_windows.runs'])
    .where('telemetry_windows.model', '=', row.model)
    .where('telemetry_windows.version', '=', row.version)
    .where('telemetry_windows.window_start', '>=', row.created_at)
    .where('rollout_devices.stage', '<=', row.current_stage)
    .execute();
  return {
    devices: new Set(windows.map((w) => w.device_id)).size,
    runs: windows.reduce((sum, w) => sum + w.runs, 0),
    merged: mergeWindows(windows.map((w) => JSON.parse(w.body) as { features: { name: string; profile: never }[] })),
  };
}

/** The version most of the rollout's devices ran before it. */
async function replacedVersion(db: Kysely<Database>, row: RolloutsTable): Promise<string | undefined> {
  const counts = await db
    .selectFrom('rollout_devices')
    .select((eb) => ['previous_version', eb.fn.countAll<number>().as('n')])
    .where('rollout_id', '=', row.id)
    .where('previous_version', 'is not', null)
    .groupBy('previous_version')
    .execute();
  return counts.sort((a, b) => Number(b.n) - Number(a.n))[0]?.previous_version ?? undefined;
}

/** Names of the output features of a version: declared ones reading outputs, or `<output>.…` defaults. */
async function outputFeatures(db: Kysely<Database>, model: string, version: string): Promise<(name: string) => boolean> {
  const row = await db
    .selectFrom('model_versions')
    .select('manifest')
    .where('name', '=', model)
    .where('version', '=', version)
    .executeTakeFirst();
  if (!row) return () => false;
  const manifest = (JSON.parse(row.manifest) as SignedDocument<ManifestPayload>).payload;
  const declared = new Set((manifest.telemetry?.features ?? []).filter((f) => f.source === 'output').map((f) => f.name));
  const prefixes = manifest.model.outputs.map((o) => `${o.name}.`);
  return (name) => declared.has(name) || prefixes.some((p) => name.startsWith(p));
}

export async function checkTelemetryGates(
  db: Kysely<Database>,
  row: RolloutsTable,
  gates: TelemetryGateSpec,
  needed: number,
): Promise<TelemetryGateResult> {
  if (gates.maxDriftScore === undefined && gates.maxOutputShift === undefined) return { verdict: 'pass', readings: {} };
  const current = await stageTelemetry(db, row);
  if (current.devices < needed) return { verdict: 'wait', devicesReporting: current.devices, needed };
  const replaced = await replacedVersion(db, row);
  let driftScore: number | undefined;

  if (gates.maxDriftScore !== undefined) {
    const references = await db
      .selectFrom('reference_profiles')
      .select(['version', 'features'])
      .where('model', '=', row.model)
      .where('version', 'in', replaced ? [row.version, replaced] : [row.version])
      .execute();
    const reference = references.find((r) => r.version === row.version) ?? references[0];
    if (reference) {
      const scored = scoreBucket(parseReference(reference.features), current.merged);
      driftScore = scored.score;
      if (scored.score > gates.maxDriftScore) {
        return {
          verdict: 'trip',
          readings: { driftScore },
          reason: {
            gate: 'maxDriftScore',
            stage: row.current_stage,
            driftScore: scored.score,
            driftedFeatures: scored.drifted,
            reference: `${row.model}@${reference.version}`,
            devicesReporting: current.devices,
            runs: current.runs,
            limit: gates.maxDriftScore,
          },
        };
      }
    }
  }

  if (gates.maxOutputShift !== undefined && replaced) {
    const since = new Date(Date.parse(row.created_at) - LOOKBACK_MS).toISOString();
    const before = await db
      .selectFrom('telemetry_windows')
      .innerJoin('rollout_devices', (join) =>
        join.onRef('rollout_devices.device_id', '=', 'telemetry_windows.device_id').on('rollout_devices.rollout_id', '=', row.id),
      )
      .select(['telemetry_windows.body'])
      .where('telemetry_windows.model', '=', row.model)
      .where('telemetry_windows.version', '=', replaced)
      .where('telemetry_windows.window_start', '>=', since)
      .execute();
    if (before.length === 0) return { verdict: 'wait', devicesReporting: 0, needed: 1 };
    const old = mergeWindows(before.map((w) => JSON.parse(w.body) as { features: { name: string; profile: never }[] }));
    const isOutput = await outputFeatures(db, row.model, row.version);
    const pairs = [...current.merged].flatMap(([name, profile]) => {
      const base = old.get(name);
      return isOutput(name) && base && base.kind === profile.kind ? [{ name, base, profile }] : [];
    });
    // A shift counts when it is both large (the distance) and real (a test at FAMILY_P_VALUE over
    // the features compared): a distance on the few hundred answers of a first window is inflated
    // by their own noise (about 0.1 for 100 values of an unchanged distribution).
    const shifts: Record<string, { distance: number; pValue: number }> = {};
    for (const { name, base, profile } of pairs) {
      const numeric = profile.kind === 'numeric';
      const distance = detectDrift(base, profile, { method: numeric ? 'wasserstein' : 'jensen-shannon' }).score;
      const pValue = detectDrift(base, profile, { method: numeric ? 'ks' : 'chi-square' }).score;
      shifts[name] = { distance, pValue };
    }
    const significant = Object.entries(shifts)
      .filter(([, s]) => s.pValue < FAMILY_P_VALUE / pairs.length)
      .sort((a, b) => b[1].distance - a[1].distance);
    const worst = significant[0];
    // The gate's reading: the largest significant shift (0 when none is significant).
    const outputShift = worst?.[1].distance ?? 0;
    if (worst && worst[1].distance > gates.maxOutputShift) {
      return {
        verdict: 'trip',
        readings: { driftScore, outputShift },
        reason: {
          gate: 'maxOutputShift',
          stage: row.current_stage,
          feature: worst[0],
          shift: worst[1].distance,
          pValue: worst[1].pValue,
          shifts,
          against: `${row.model}@${replaced}`,
          devicesReporting: current.devices,
          limit: gates.maxOutputShift,
        },
      };
    }
    if (current.runs < MIN_OUTPUT_RUNS) return { verdict: 'wait', devicesReporting: current.devices, needed };
    return { verdict: 'pass', readings: { driftScore, outputShift } };
  }
  return { verdict: 'pass', readings: { driftScore } };
}
