/**
 * Reference profiles and drift. A version's reference is the merge of its telemetry over a chosen
 * period (the canary stage, a known-good day); drift compares what devices report in each later
 * window, merged per device group, with it, feature by feature, with @edgefleet/drift's tests and
 * defaults.
 */
import {
  type DriftResult,
  defaultMethod,
  detectDrift,
  type FeatureProfile,
  fromWire,
  mergeProfiles,
  toWire,
  type WireProfile,
} from '@edgefleet/drift';
import { EdgefleetError, type TelemetryWindow } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';

/** Merges the named features of many windows (a feature missing from some is merged where present). */
export function mergeWindows(
  windows: readonly { readonly features: readonly { readonly name: string; readonly profile: WireProfile }[] }[],
): Map<string, FeatureProfile> {
  return mergeFeatureMaps(windows.map((window) => new Map(window.features.map(({ name, profile }) => [name, fromWire(profile)]))));
}

/** A stored window's features, parsed once (then merged into as many groups as it belongs to). */
export function parseWindowFeatures(body: string): Map<string, FeatureProfile> {
  return new Map((JSON.parse(body) as TelemetryWindow).features.map(({ name, profile }) => [name, fromWire(profile)]));
}

/** Merges parsed feature profiles; the inputs are left as they were. */
export function mergeFeatureMaps(maps: readonly ReadonlyMap<string, FeatureProfile>[]): Map<string, FeatureProfile> {
  const merged = new Map<string, FeatureProfile>();
  for (const features of maps) {
    for (const [name, profile] of features) {
      const previous = merged.get(name);
      merged.set(name, previous ? mergeProfiles(previous, profile) : profile);
    }
  }
  return merged;
}

export async function createReferenceFromTelemetry(
  db: Kysely<Database>,
  options: { model: string; version: string; from: string; to: string; tag?: string; actor: string },
): Promise<{ windows: number; runs: number; features: string[] }> {
  const rows = (
    await db
      .selectFrom('telemetry_windows')
      .innerJoin('devices', 'devices.id', 'telemetry_windows.device_id')
      .select(['telemetry_windows.body', 'telemetry_windows.runs', 'devices.tags'])
      .where('telemetry_windows.model', '=', options.model)
      .where('telemetry_windows.version', '=', options.version)
      .where('telemetry_windows.window_start', '>=', options.from)
      .where('telemetry_windows.window_end', '<=', options.to)
      .execute()
  ).filter((r) => !options.tag || (JSON.parse(r.tags) as string[]).includes(options.tag));
  if (rows.length === 0) {
    throw new EdgefleetError(
      'EF_NOT_FOUND',
      `no telemetry of ${options.model}@${options.version} between ${options.from} and ${options.to}${options.tag ? ` from devices tagged ${options.tag}` : ''}`,
    );
  }
  const merged = mergeWindows(rows.map((r) => JSON.parse(r.body) as TelemetryWindow));
  const features = [...merged].map(([name, profile]) => ({ name, profile: toWire(profile) }));
  const runs = rows.reduce((sum, r) => sum + r.runs, 0);
  await storeReference(db, {
    model: options.model,
    version: options.version,
    source: `telemetry ${options.from}/${options.to}${options.tag ? ` tag ${options.tag}` : ''}`,
    windows: rows.length,
    runs,
    features,
    actor: options.actor,
  });
  return { windows: rows.length, runs, features: features.map((f) => f.name) };
}

/** Makes `features` the version's reference profile (replacing any earlier one). */
export async function storeReference(
  db: Kysely<Database>,
  reference: {
    model: string;
    version: string;
    source: string;
    windows: number;
    runs: number;
    features: readonly { name: string; profile: WireProfile }[];
    actor: string;
  },
): Promise<void> {
  const values = {
    source: reference.source,
    windows: reference.windows,
    runs: reference.runs,
    features: JSON.stringify(reference.features),
    created_at: new Date().toISOString(),
    created_by: reference.actor,
  };
  await db
    .insertInto('reference_profiles')
    .values({ model: reference.model, version: reference.version, ...values })
    .onConflict((c) => c.columns(['model', 'version']).doUpdateSet(values))
    .execute();
}

/** p-value tests get their threshold divided among the features compared (Bonferroni). */
const P_VALUE_METHODS = new Set(['ks', 'chi-square']);

export interface BucketScore {
  readonly results: Record<string, DriftResult>;
  readonly drifted: string[];
  readonly compared: number;
  /** Share of the compared features that drifted, 0-1. */
  readonly score: number;
}

/**
 * A group's verdict over all its features is wrong at most this often when nothing changed: a
 * fleet has many groups and buckets, so the family-wise rate is 1%, not each feature's 5%.
 */
export const FAMILY_P_VALUE = 0.01;

/**
 * Compares merged current profiles with the reference, feature by feature, with each feature's
 * default test. With m features compared at once, p-value tests use FAMILY_P_VALUE / m
 * (Bonferroni), so a group of unchanged features is flagged in at most 1% of buckets however many
 * features it has; distances keep their thresholds (they do not grow more likely to fire with more
 * features). A feature missing from either side, or of another kind, is not compared.
 */
export function scoreBucket(reference: ReadonlyMap<string, FeatureProfile>, current: ReadonlyMap<string, FeatureProfile>): BucketScore {
  const pairs = [...current].flatMap(([name, profile]) => {
    const base = reference.get(name);
    return base && base.kind === profile.kind ? [{ name, base, profile }] : [];
  });
  const results: Record<string, DriftResult> = {};
  for (const { name, base, profile } of pairs) {
    const method = defaultMethod(base, profile);
    results[name] = detectDrift(
      base,
      profile,
      P_VALUE_METHODS.has(method) ? { method, threshold: FAMILY_P_VALUE / pairs.length } : { method },
    );
  }
  const drifted = Object.keys(results).filter((name) => results[name]?.drifted);
  return { results, drifted, compared: pairs.length, score: pairs.length === 0 ? 0 : drifted.length / pairs.length };
}

export function parseReference(features: string): Map<string, FeatureProfile> {
  return new Map((JSON.parse(features) as { name: string; profile: WireProfile }[]).map((f) => [f.name, fromWire(f.profile)]));
}

export interface DriftWindow {
  readonly windowStart: string;
  readonly windowEnd: string;
  readonly devices: number;
  readonly runs: number;
  readonly features: Record<string, DriftResult>;
  readonly drifted: string[];
  /** Share of the compared features that drifted, 0-1. */
  readonly score: number;
}

/**
 * Drift per time window (windows bucketed by their start, `bucketMs` wide) for the devices of one
 * group (a tag; all devices when absent), against the version's reference.
 */
export async function evaluateDrift(
  db: Kysely<Database>,
  options: {
    model: string;
    version: string;
    tag?: string;
    since?: string;
    bucketMs?: number;
    /** At most this many buckets (the page), after the bucket starting at `after` (ms). */
    limit?: number;
    after?: number;
  },
): Promise<{ reference: { source: string; runs: number }; windows: DriftWindow[]; nextAfter: number | null }> {
  const reference = await db
    .selectFrom('reference_profiles')
    .selectAll()
    .where('model', '=', options.model)
    .where('version', '=', options.version)
    .executeTakeFirst();
  if (!reference) {
    throw new EdgefleetError('EF_NOT_FOUND', `${options.model}@${options.version} has no reference profile yet (POST …/reference)`);
  }
  const referenceFeatures = parseReference(reference.features);
  let select = db
    .selectFrom('telemetry_windows')
    .innerJoin('devices', 'devices.id', 'telemetry_windows.device_id')
    .select([
      'telemetry_windows.body',
      'telemetry_windows.device_id',
      'telemetry_windows.runs',
      'telemetry_windows.window_start',
      'devices.tags',
    ])
    .where('telemetry_windows.model', '=', options.model)
    .where('telemetry_windows.version', '=', options.version)
    .orderBy('telemetry_windows.window_start');
  const bucketMs = options.bucketMs ?? 60_000;
  const from = Math.max(options.since ? Date.parse(options.since) : 0, options.after === undefined ? 0 : options.after + bucketMs);
  if (from > 0) select = select.where('telemetry_windows.window_start', '>=', new Date(from).toISOString());
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  // Streamed, a page of buckets at a time: memory holds the page's windows, never the whole history.
  const buckets = new Map<number, Awaited<ReturnType<typeof select.execute>>>();
  let nextAfter: number | null = null;
  for await (const row of select.stream(500)) {
    if (options.tag && !(JSON.parse(row.tags) as string[]).includes(options.tag)) continue;
    const bucket = Math.floor(Date.parse(row.window_start) / bucketMs) * bucketMs;
    const members = buckets.get(bucket);
    if (members) members.push(row);
    else if (buckets.size >= limit) {
      // A bucket beyond the page: there is a next page, after the page's last bucket.
      nextAfter = Math.max(...buckets.keys());
      break;
    } else buckets.set(bucket, [row]);
  }
  const windows: DriftWindow[] = [];
  for (const [bucket, members] of [...buckets].sort((a, b) => a[0] - b[0])) {
    const scored = scoreBucket(referenceFeatures, mergeWindows(members.map((m) => JSON.parse(m.body) as TelemetryWindow)));
    windows.push({
      windowStart: new Date(bucket).toISOString(),
      windowEnd: new Date(bucket + bucketMs).toISOString(),
      devices: new Set(members.map((m) => m.device_id)).size,
      runs: members.reduce((sum, m) => sum + m.runs, 0),
      features: scored.results,
      drifted: scored.drifted,
      score: scored.score,
    });
  }
  return { reference: { source: reference.source, runs: reference.runs }, windows, nextAfter };
}

/**
 * The latest scored bucket of each device group of each version (of one version when given), by
 * group: what a version's drift status and the drift metrics are made of.
 */
export function latestScores(db: Kysely<Database>, of?: { readonly model: string; readonly version: string }) {
  let query = db
    .selectFrom('drift_scores as s')
    .selectAll('s')
    .where('s.bucket_start', '=', (eb) =>
      eb
        .selectFrom('drift_scores as t')
        .select((e) => e.fn.max('t.bucket_start').as('m'))
        .whereRef('t.model', '=', 's.model')
        .whereRef('t.version', '=', 's.version')
        .whereRef('t.group_tag', '=', 's.group_tag'),
    );
  if (of) query = query.where('s.model', '=', of.model).where('s.version', '=', of.version);
  return query.orderBy('s.model').orderBy('s.version').orderBy('s.group_tag').execute();
}
