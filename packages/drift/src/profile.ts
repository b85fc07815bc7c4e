/**
 * A feature's profile for one window: what devices ship instead of raw inputs. Numeric features
 * keep moments, a KLL sketch and (when the reference's bin edges are known) a histogram;
 * categorical ones keep bounded category counts. Profiles merge (across devices, windows, groups)
 * and serialize to compact JSON for MQTT: sketch items as float32, base64.
 */
import { alignCategories, type CategoryCounts, categoryAdd, createCategoryCounts, mergeCategoryCounts } from './categories.ts';
import { createHistogram, type Histogram, histogramAdd, mergeHistograms } from './histogram.ts';
import { createKll, type KllSketch, kllMerge, kllUpdate, rankError } from './kll.ts';
import { addValue, emptyMoments, type Moments, mergeMoments, totalSeen, variance } from './moments.ts';
import { chiSquare, jensenShannon, ksFromSketches, ksPValue, psi, wasserstein } from './stats.ts';

export interface NumericProfile {
  readonly kind: 'numeric';
  moments: Moments;
  sketch: KllSketch;
  histogram?: Histogram;
}

export interface CategoricalProfile {
  readonly kind: 'categorical';
  missing: number;
  categories: CategoryCounts;
}

export type FeatureProfile = NumericProfile | CategoricalProfile;

export function numericProfile(options: { k?: number; edges?: readonly number[] } = {}): NumericProfile {
  return {
    kind: 'numeric',
    moments: emptyMoments(),
    sketch: createKll(options.k ?? 200),
    ...(options.edges ? { histogram: createHistogram(options.edges) } : {}),
  };
}

export function categoricalProfile(limit = 256): CategoricalProfile {
  return { kind: 'categorical', missing: 0, categories: createCategoryCounts(limit) };
}

/** Folds one observation in. Numbers into a numeric profile, strings (or numbers, as labels) into a categorical one. */
export function observe(profile: FeatureProfile, value: number | string | null | undefined): void {
  if (profile.kind === 'categorical') {
    if (value === null || value === undefined) profile.missing++;
    else categoryAdd(profile.categories, String(value));
    return;
  }
  const x = typeof value === 'string' ? Number.NaN : value;
  addValue(profile.moments, x);
  if (typeof x === 'number' && Number.isFinite(x)) {
    kllUpdate(profile.sketch, x);
    if (profile.histogram) histogramAdd(profile.histogram, x);
  }
}

export function mergeProfiles(a: FeatureProfile, b: FeatureProfile): FeatureProfile {
  if (a.kind === 'categorical' && b.kind === 'categorical') {
    return { kind: 'categorical', missing: a.missing + b.missing, categories: mergeCategoryCounts(a.categories, b.categories) };
  }
  if (a.kind === 'numeric' && b.kind === 'numeric') {
    const histogram = a.histogram && b.histogram ? mergeHistograms(a.histogram, b.histogram) : undefined;
    return {
      kind: 'numeric',
      moments: mergeMoments(a.moments, b.moments),
      sketch: kllMerge(a.sketch, b.sketch),
      ...(histogram ? { histogram } : {}),
    };
  }
  throw new RangeError(`cannot merge a ${a.kind} profile with a ${b.kind} one`);
}

/** The rank error a sketch may carry: none while it holds every value, else its documented bound. */
function sketchError(sketch: KllSketch): number {
  let retained = 0;
  for (const level of sketch.levels) retained += level.length;
  return retained < sketch.n ? rankError(sketch.k) : 0;
}

export function observedCount(profile: FeatureProfile): number {
  if (profile.kind === 'categorical') return profile.missing + Object.values(profile.categories.counts).reduce((a, b) => a + b, 0);
  return totalSeen(profile.moments);
}

// --- drift between a reference profile and a current one -----------------------------------------

export type DriftMethod = 'ks' | 'wasserstein' | 'psi' | 'jensen-shannon' | 'chi-square';

export interface DriftResult {
  readonly method: DriftMethod;
  /** The statistic: a p-value for ks and chi-square (drift when below the threshold), a distance otherwise. */
  readonly score: number;
  readonly threshold: number;
  readonly drifted: boolean;
  /** Values behind the score (the KS or chi-square statistic). */
  readonly statistic?: number;
}

/** Defaults in the spirit of Evidently: small references get a test with a p-value, large ones a distance. */
export const DRIFT_DEFAULTS = {
  /** At most this many reference values: KS (numeric) or chi-square (categorical), drift when p < 0.05. */
  smallReference: 1000,
  pValue: 0.05,
  /** Wasserstein normed by the reference's standard deviation, Jensen–Shannon distance: drift above 0.1. */
  distance: 0.1,
  /** PSI: drift above 0.1 (0.2 is the usual "significant"). */
  psi: 0.1,
} as const;

/**
 * As Evidently: a test with a p-value for a small reference, a distance for a large one. Given the
 * current profile too, a small current sample also gets the test: a distance between a large
 * reference and a few hundred values is biased upwards by the sample's own noise (the normed
 * Wasserstein distance of 100 normal values from their own distribution averages 0.13, of 300
 * values 0.075: above or next to the 0.1 threshold), while a test accounts for the sample size.
 */
export function defaultMethod(reference: FeatureProfile, current?: FeatureProfile): DriftMethod {
  const small =
    observedCount(reference) <= DRIFT_DEFAULTS.smallReference ||
    (current !== undefined && observedCount(current) <= DRIFT_DEFAULTS.smallReference);
  if (reference.kind === 'categorical') return small ? 'chi-square' : 'jensen-shannon';
  return small ? 'ks' : 'wasserstein';
}

export function detectDrift(
  reference: FeatureProfile,
  current: FeatureProfile,
  options: { method?: DriftMethod; threshold?: number } = {},
): DriftResult {
  const method = options.method ?? defaultMethod(reference, current);
  if (reference.kind === 'categorical' && current.kind === 'categorical') {
    const aligned = alignCategories(reference.categories, current.categories);
    if (method === 'chi-square') {
      const threshold = options.threshold ?? DRIFT_DEFAULTS.pValue;
      const result = chiSquare(aligned.reference, aligned.current);
      return { method, score: result.pValue, threshold, drifted: result.pValue < threshold, statistic: result.statistic };
    }
    if (method === 'jensen-shannon' || method === 'psi') {
      const threshold = options.threshold ?? (method === 'psi' ? DRIFT_DEFAULTS.psi : DRIFT_DEFAULTS.distance);
      const score = method === 'psi' ? psi(aligned.reference, aligned.current) : jensenShannon(aligned.reference, aligned.current);
      return { method, score, threshold, drifted: score > threshold };
    }
    throw new RangeError(`${method} does not apply to categorical features`);
  }
  if (reference.kind === 'numeric' && current.kind === 'numeric') {
    if (method === 'ks') {
      const threshold = options.threshold ?? DRIFT_DEFAULTS.pValue;
      const statistic = ksFromSketches(reference.sketch, current.sketch);
      // The sketches' own rank error is not evidence of drift: the p-value is computed on the
      // statistic less the documented error of each sketch that compacted (exact ones add none),
      // so identical distributions are flagged no more often than the threshold says.
      const slack = sketchError(reference.sketch) + sketchError(current.sketch);
      const pValue = ksPValue(Math.max(0, statistic - slack), reference.sketch.n, current.sketch.n);
      return { method, score: pValue, threshold, drifted: pValue < threshold, statistic };
    }
    if (method === 'wasserstein') {
      const threshold = options.threshold ?? DRIFT_DEFAULTS.distance;
      const spread = Math.sqrt(variance(reference.moments));
      const distance = wasserstein(reference.sketch, current.sketch);
      const score = spread > 0 ? distance / spread : distance === 0 ? 0 : Number.POSITIVE_INFINITY;
      return { method, score, threshold, drifted: score > threshold };
    }
    if (method === 'psi' || method === 'jensen-shannon') {
      if (!reference.histogram || !current.histogram) throw new RangeError(`${method} needs both profiles binned on the same edges`);
      const threshold = options.threshold ?? (method === 'psi' ? DRIFT_DEFAULTS.psi : DRIFT_DEFAULTS.distance);
      const score =
        method === 'psi'
          ? psi(reference.histogram.counts, current.histogram.counts)
          : jensenShannon(reference.histogram.counts, current.histogram.counts);
      return { method, score, threshold, drifted: score > threshold };
    }
    throw new RangeError(`${method} does not apply to numeric features`);
  }
  throw new RangeError(`cannot compare a ${reference.kind} profile with a ${current.kind} one`);
}
