/**
 * Counts over fixed bin edges, so windows from any device merge by adding counts. The edges come
 * from the reference (by default its deciles, so each reference bin holds ~10%): the current
 * window is binned the way the reference was, which is what PSI and Jensen–Shannon compare.
 *
 * With edges e₀ < e₁ < … < e_(m-1), there are m + 1 bins: (-∞, e₀), [e₀, e₁), …, [e_(m-1), +∞).
 */
import { type KllSketch, kllQuantile } from './kll.ts';

export interface Histogram {
  readonly edges: readonly number[];
  /** edges.length + 1 counts. */
  readonly counts: number[];
}

export function createHistogram(edges: readonly number[]): Histogram {
  for (let i = 1; i < edges.length; i++) {
    if (!((edges[i] as number) > (edges[i - 1] as number))) throw new RangeError('histogram edges must be strictly increasing and finite');
  }
  if (edges.some((e) => !Number.isFinite(e))) throw new RangeError('histogram edges must be strictly increasing and finite');
  return { edges: [...edges], counts: new Array<number>(edges.length + 1).fill(0) };
}

/** The bin a value falls in (binary search over the edges). */
export function binOf(edges: readonly number[], value: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (value >= (edges[mid] as number)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function histogramAdd(histogram: Histogram, value: number): void {
  const bin = binOf(histogram.edges, value);
  histogram.counts[bin] = (histogram.counts[bin] ?? 0) + 1;
}

export function mergeHistograms(a: Histogram, b: Histogram): Histogram {
  if (a.edges.length !== b.edges.length || a.edges.some((e, i) => e !== b.edges[i])) {
    throw new RangeError('cannot merge histograms with different bin edges');
  }
  return { edges: a.edges, counts: a.counts.map((c, i) => c + (b.counts[i] ?? 0)) };
}

/**
 * Bin edges from a reference sketch: its `bins`-quantiles, duplicates dropped (a feature with few
 * distinct values gets fewer bins).
 */
export function quantileEdges(reference: KllSketch, bins = 10): number[] {
  const edges: number[] = [];
  for (let i = 1; i < bins; i++) {
    const edge = kllQuantile(reference, i / bins);
    if (Number.isFinite(edge) && (edges.length === 0 || edge > (edges[edges.length - 1] as number))) edges.push(edge);
  }
  return edges;
}
