/**
 * One feature's distribution: the reference profile's against the live one merged from the
 * telemetry of a time range (one device group, or all), side by side. Numeric features get
 * quantiles and a histogram over the reference's deciles (so ten equal bars mean "as the reference");
 * categorical ones the share of each category. What a drift chart's score summarises, shown.
 */
import {
  alignCategories,
  createCategoryCounts,
  type FeatureProfile,
  fromWire,
  kllQuantile,
  kllRank,
  mergeProfiles,
  quantileEdges,
  totalSeen,
  variance,
  type WireProfile,
} from '@edgefleet/drift';
import { EdgefleetError, type TelemetryWindow } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import { ALL_DEVICES } from './evaluator.ts';
import { parseReference } from './scoring.ts';

const QUANTILES = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1] as const;
/** Rows read from the database at a time: memory stays bounded however long the range. */
const CHUNK = 500;
/** Categories shown at most (the largest by reference or live share). */
const MAX_CATEGORIES = 32;

export interface NumericSummary {
  readonly count: number;
  readonly mean: number | null;
  readonly std: number | null;
  readonly quantiles: { readonly q: number; readonly value: number }[];
}

export interface Distribution {
  readonly model: string;
  readonly version: string;
  readonly feature: string;
  readonly group: string;
  readonly since: string;
  readonly until: string;
  readonly kind: 'numeric' | 'categorical';
  /** Telemetry windows merged into the live side. */
  readonly windows: number;
  readonly reference: NumericSummary | null;
  readonly live: NumericSummary | null;
  /** Numeric: the reference's decile edges (inner), and each side's share per bin (edges.length + 1 bins). */
  readonly histogram: { readonly edges: number[]; readonly reference: number[]; readonly live: number[] } | null;
  /** Categorical: each category's share on each side, largest first. */
  readonly categories: { readonly name: string; readonly reference: number; readonly live: number }[] | null;
}

function numericSummary(profile: FeatureProfile | undefined): NumericSummary | null {
  if (profile?.kind !== 'numeric' || profile.sketch.n === 0) return null;
  const std = Math.sqrt(variance(profile.moments));
  return {
    count: totalSeen(profile.moments),
    mean: Number.isFinite(profile.moments.mean) ? profile.moments.mean : null,
    std: Number.isFinite(std) ? std : null,
    quantiles: QUANTILES.map((q) => ({ q, value: kllQuantile(profile.sketch, q) })),
  };
}

/** Shares per bin of a sketch over inner edges: (-inf, e0], (e0, e1], …, (e_last, +inf). */
function binShares(profile: FeatureProfile | undefined, edges: readonly number[]): number[] {
  if (profile?.kind !== 'numeric' || profile.sketch.n === 0) return edges.length === 0 ? [] : new Array(edges.length + 1).fill(0);
  const ranks = edges.map((edge) => kllRank(profile.sketch, edge));
  return [...ranks, 1].map((rank, i) => Math.max(0, rank - (i === 0 ? 0 : (ranks[i - 1] as number))));
}

export async function featureDistribution(
  db: Kysely<Database>,
  query: { model: string; version: string; feature: string; group: string; since: string; until: string },
): Promise<Distribution> {
  const referenceRow = await db
    .selectFrom('reference_profiles')
    .select('features')
    .where('model', '=', query.model)
    .where('version', '=', query.version)
    .executeTakeFirst();
  const reference = referenceRow ? parseReference(referenceRow.features).get(query.feature) : undefined;

  // The live side, merged a chunk of windows at a time (keyset on the primary key's order).
  let live: FeatureProfile | undefined;
  let windows = 0;
  let after: { window_start: string; device_id: string; boot_id: string; seq: number } | undefined;
  for (;;) {
    let select = db
      .selectFrom('telemetry_windows')
      .innerJoin('devices', 'devices.id', 'telemetry_windows.device_id')
      .select([
        'telemetry_windows.body',
        'telemetry_windows.window_start',
        'telemetry_windows.device_id',
        'telemetry_windows.boot_id',
        'telemetry_windows.seq',
        'devices.tags',
      ])
      .where('telemetry_windows.model', '=', query.model)
      .where('telemetry_windows.version', '=', query.version)
      .where('telemetry_windows.window_start', '>=', query.since)
      .where('telemetry_windows.window_start', '<', query.until);
    if (after) {
      const a = after;
      select = select.where((eb) =>
        eb.or([
          eb('telemetry_windows.window_start', '>', a.window_start),
          eb.and([eb('telemetry_windows.window_start', '=', a.window_start), eb('telemetry_windows.device_id', '>', a.device_id)]),
          eb.and([
            eb('telemetry_windows.window_start', '=', a.window_start),
            eb('telemetry_windows.device_id', '=', a.device_id),
            eb('telemetry_windows.boot_id', '>', a.boot_id),
          ]),
          eb.and([
            eb('telemetry_windows.window_start', '=', a.window_start),
            eb('telemetry_windows.device_id', '=', a.device_id),
            eb('telemetry_windows.boot_id', '=', a.boot_id),
            eb('telemetry_windows.seq', '>', a.seq),
          ]),
        ]),
      );
    }
    const rows = await select
      .orderBy('telemetry_windows.window_start')
      .orderBy('telemetry_windows.device_id')
      .orderBy('telemetry_windows.boot_id')
      .orderBy('telemetry_windows.seq')
      .limit(CHUNK)
      .execute();
    for (const row of rows) {
      if (query.group !== ALL_DEVICES && !(JSON.parse(row.tags) as string[]).includes(query.group)) continue;
      const feature = (JSON.parse(row.body) as TelemetryWindow).features.find((f) => f.name === query.feature);
      if (!feature) continue;
      const profile = fromWire(feature.profile as WireProfile);
      if (live && live.kind !== profile.kind) continue;
      live = live ? mergeProfiles(live, profile) : profile;
      windows++;
    }
    if (rows.length < CHUNK) break;
    const last = rows[rows.length - 1] as (typeof rows)[number];
    after = { window_start: last.window_start, device_id: last.device_id, boot_id: last.boot_id, seq: last.seq };
  }

  const kind = reference?.kind ?? live?.kind;
  if (!kind) {
    throw new EdgefleetError(
      'EF_NOT_FOUND',
      `feature "${query.feature}" of ${query.model}@${query.version} is neither in its reference profile nor in its telemetry between ${query.since} and ${query.until}`,
    );
  }
  const base = { ...query, kind, windows };
  if (kind === 'numeric') {
    const edges = reference?.kind === 'numeric' ? quantileEdges(reference.sketch, 10) : [];
    return {
      ...base,
      reference: numericSummary(reference),
      live: numericSummary(live?.kind === 'numeric' ? live : undefined),
      histogram: edges.length === 0 ? null : { edges, reference: binShares(reference, edges), live: binShares(live, edges) },
      categories: null,
    };
  }
  const ref = reference?.kind === 'categorical' ? reference.categories : undefined;
  const cur = live?.kind === 'categorical' ? live.categories : undefined;
  const aligned = alignCategories(ref ?? createCategoryCounts(), cur ?? createCategoryCounts());
  const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
  const refTotal = sum(aligned.reference);
  const liveTotal = sum(aligned.current);
  const categories = aligned.categories
    .map((name, i) => ({
      name,
      reference: refTotal === 0 ? 0 : (aligned.reference[i] as number) / refTotal,
      live: liveTotal === 0 ? 0 : (aligned.current[i] as number) / liveTotal,
    }))
    .sort((a, b) => Math.max(b.reference, b.live) - Math.max(a.reference, a.live) || a.name.localeCompare(b.name))
    .slice(0, MAX_CATEGORIES);
  return { ...base, reference: null, live: null, histogram: null, categories };
}
