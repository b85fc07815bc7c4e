export { alignCategories, type CategoryCounts, categoryAdd, createCategoryCounts, mergeCategoryCounts, OTHER } from './categories.ts';
export { binOf, createHistogram, type Histogram, histogramAdd, mergeHistograms, quantileEdges } from './histogram.ts';
export { createKll, type KllSketch, kllMerge, kllQuantile, kllRank, kllSorted, kllUpdate, rankError } from './kll.ts';
export { addValue, emptyMoments, type Moments, mergeMoments, totalSeen, variance } from './moments.ts';
export {
  type CategoricalProfile,
  categoricalProfile,
  DRIFT_DEFAULTS,
  type DriftMethod,
  type DriftResult,
  defaultMethod,
  detectDrift,
  type FeatureProfile,
  mergeProfiles,
  type NumericProfile,
  numericProfile,
  observe,
  observedCount,
} from './profile.ts';
export { splitmix } from './random.ts';
export { checkWire, fromWire, toWire, type WireLimits, type WireProfile } from './serialize.ts';
export {
  chiSquare,
  chiSquareSurvival,
  jensenShannon,
  kolmogorovSurvival,
  ksFromSketches,
  ksPValue,
  ksStatistic,
  psi,
  wasserstein,
} from './stats.ts';
