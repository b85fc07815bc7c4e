/**
 * The gates of a shadow stage, from what its devices compared: each window a device sends while a
 * candidate runs in shadow carries a ShadowSummary (inputs run, class agreement, top-k overlap,
 * output differences, latency over the live version's). Summed over the stage's devices since the
 * rollout began, they decide whether the candidate goes live:
 *
 * - minShadowAgreement: Σ agreed / Σ rows pooled over every compared input of the stage, or the
 *   median of the devices' own shares when lower (one device cannot carry the stage);
 * - maxShadowLatencyRatio: the median of the merged per-input latency ratio (candidate / live);
 * - maxShadowErrorRate: shadow runs that failed where the live version answered, over all tried;
 * - minShadowRuns: nothing is decided before the stage compared that many inputs.
 */
import { fromWire, kllQuantile, mergeProfiles, type WireProfile } from '@edgefleet/drift';
import type { TelemetryWindow } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import type { Database, RolloutsTable } from '../store/schema.ts';
import { median, type ShadowGates } from './decide.ts';

/** What the stage's comparisons add up to (null where nothing was measured). */
export interface ShadowReadings {
  readonly devices: number;
  readonly runs: number;
  readonly skipped: number;
  readonly errors: number;
  readonly errorRate: number | null;
  /** Rows of class scores compared, the share where both picked the same class, and the mean top-3 overlap. */
  readonly rows: number;
  /**
   * The share of rows where both picked the same class: the lower of the pooled share and the
   * median of the devices' own shares, so that one device (a faulty or forged report of many rows)
   * cannot carry the stage alone.
   */
  readonly agreement: number | null;
  readonly pooledAgreement: number | null;
  readonly medianDeviceAgreement: number | null;
  readonly topKOverlap: number | null;
  readonly maxAbsDiff: number | null;
  readonly meanAbsDiff: number | null;
  /** The candidate's latency over the live version's, per compared input: median and p95. */
  readonly latencyRatio: { readonly p50: number; readonly p95: number } | null;
  /** The device whose own agreement is lowest (where it compared rows). */
  readonly worstDevice: { readonly id: string; readonly agreement: number; readonly rows: number } | null;
}

export type ShadowGateResult =
  | { readonly verdict: 'pass'; readonly readings: ShadowReadings }
  | { readonly verdict: 'wait'; readonly readings: ShadowReadings; readonly needed: { readonly devices: number; readonly runs: number } }
  | { readonly verdict: 'trip'; readonly reason: Record<string, unknown>; readonly readings: ShadowReadings };

type Summary = NonNullable<TelemetryWindow['shadow']>;

/** Adds up the shadow summaries of a candidate (pure: the engine's query hands the windows in). */
export function sumShadow(version: string, windows: readonly { readonly deviceId: string; readonly shadow: Summary }[]): ShadowReadings {
  let runs = 0;
  let skipped = 0;
  let errors = 0;
  let rows = 0;
  let agreed = 0;
  let overlap = 0;
  let elements = 0;
  let absDiffSum = 0;
  let maxAbsDiff = 0;
  let latency: ReturnType<typeof fromWire> | undefined;
  const perDevice = new Map<string, { rows: number; agreed: number; runs: number }>();
  for (const { deviceId, shadow } of windows) {
    if (shadow.version !== version) continue;
    runs += shadow.runs;
    skipped += shadow.skipped;
    errors += shadow.errors;
    rows += shadow.rows;
    agreed += shadow.agreed;
    overlap += shadow.overlap;
    elements += shadow.elements;
    absDiffSum += shadow.absDiffSum;
    maxAbsDiff = Math.max(maxAbsDiff, shadow.maxAbsDiff);
    if (shadow.runs > 0) {
      const profile = fromWire(shadow.latencyRatio as WireProfile);
      latency = latency ? mergeProfiles(latency, profile) : profile;
    }
    const device = perDevice.get(deviceId) ?? { rows: 0, agreed: 0, runs: 0 };
    device.rows += shadow.rows;
    device.agreed += shadow.agreed;
    device.runs += shadow.runs;
    perDevice.set(deviceId, device);
  }
  let worstDevice: ShadowReadings['worstDevice'] = null;
  const shares: number[] = [];
  for (const [id, device] of perDevice) {
    if (device.rows === 0) continue;
    const agreement = device.agreed / device.rows;
    shares.push(agreement);
    if (!worstDevice || agreement < worstDevice.agreement) worstDevice = { id, agreement, rows: device.rows };
  }
  const pooled = rows === 0 ? null : agreed / rows;
  const middle = shares.length === 0 ? null : median(shares);
  const sketch = latency?.kind === 'numeric' && latency.sketch.n > 0 ? latency.sketch : undefined;
  return {
    devices: [...perDevice.values()].filter((d) => d.runs > 0).length,
    runs,
    skipped,
    errors,
    errorRate: runs + errors === 0 ? null : errors / (runs + errors),
    rows,
    agreement: pooled === null || middle === null ? null : Math.min(pooled, middle),
    pooledAgreement: pooled,
    medianDeviceAgreement: middle,
    topKOverlap: rows === 0 ? null : overlap / rows,
    maxAbsDiff: elements === 0 ? null : maxAbsDiff,
    meanAbsDiff: elements === 0 ? null : absDiffSum / elements,
    latencyRatio: sketch ? { p50: kllQuantile(sketch, 0.5), p95: kllQuantile(sketch, 0.95) } : null,
    worstDevice,
  };
}

/** The verdict of a shadow stage's gates on its readings; `needed`: devices that must have compared. */
export function judgeShadow(gates: ShadowGates, readings: ShadowReadings, needed: number, stage: number): ShadowGateResult {
  const trip = (reason: Record<string, unknown>): ShadowGateResult => ({
    verdict: 'trip',
    readings,
    reason: { stage, devicesReporting: readings.devices, runs: readings.runs, ...reason },
  });
  // Errors need no minimum: a candidate that fails where the live version answered is not ready.
  if (readings.errorRate !== null && readings.errors > 0 && readings.errorRate > gates.maxErrorRate) {
    return trip({ gate: 'maxShadowErrorRate', errors: readings.errors, errorRate: readings.errorRate, limit: gates.maxErrorRate });
  }
  if (readings.devices < needed || readings.runs < gates.minRuns) {
    return { verdict: 'wait', readings, needed: { devices: needed, runs: gates.minRuns } };
  }
  if (gates.minAgreement !== undefined) {
    if (readings.agreement === null) {
      return trip({
        gate: 'minShadowAgreement',
        agreement: null,
        limit: gates.minAgreement,
        message: 'no output of this model holds class scores, so agreement cannot be measured: drop minShadowAgreement',
      });
    }
    if (readings.agreement < gates.minAgreement) {
      return trip({
        gate: 'minShadowAgreement',
        agreement: readings.agreement,
        pooledAgreement: readings.pooledAgreement,
        medianDeviceAgreement: readings.medianDeviceAgreement,
        rows: readings.rows,
        topKOverlap: readings.topKOverlap,
        worstDevice: readings.worstDevice,
        limit: gates.minAgreement,
      });
    }
  }
  if (gates.maxLatencyRatio !== undefined && readings.latencyRatio && readings.latencyRatio.p50 > gates.maxLatencyRatio) {
    return trip({
      gate: 'maxShadowLatencyRatio',
      medianRatio: readings.latencyRatio.p50,
      p95Ratio: readings.latencyRatio.p95,
      limit: gates.maxLatencyRatio,
    });
  }
  return { verdict: 'pass', readings };
}

/** Reads the shadow summaries of the candidate from the windows the stage's devices sent since the rollout began. */
export async function checkShadowGates(
  db: Kysely<Database>,
  row: RolloutsTable,
  gates: ShadowGates,
  needed: number,
): Promise<ShadowGateResult> {
  const windows = await db
    .selectFrom('telemetry_windows')
    .innerJoin('rollout_devices', (join) =>
      join.onRef('rollout_devices.device_id', '=', 'telemetry_windows.device_id').on('rollout_devices.rollout_id', '=', row.id),
    )
    .select(['telemetry_windows.body', 'telemetry_windows.device_id'])
    .where('telemetry_windows.model', '=', row.model)
    .where('telemetry_windows.window_start', '>=', row.created_at)
    .where('rollout_devices.stage', '<=', row.current_stage)
    // Only windows that carry a shadow summary are parsed (the same LIKE on SQLite and PostgreSQL).
    .where('telemetry_windows.body', 'like', '%"shadow"%')
    .execute();
  const summaries = windows.flatMap((w) => {
    const shadow = (JSON.parse(w.body) as TelemetryWindow).shadow;
    return shadow ? [{ deviceId: w.device_id, shadow }] : [];
  });
  return judgeShadow(gates, sumShadow(row.version, summaries), needed, row.current_stage);
}
