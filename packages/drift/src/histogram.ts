/**
 * Counts over fixed bin edges, so windows from any device merge by adding counts. The edges come
 * from the reference (by default ten bins, each holding 10% of it: see quantileEdges): the current
 * window is binned the way the reference was, which is what PSI and Jensen–Shannon compare.
 *
 * With edges e₀ < e₁ < … < e_(m-1), there are m + 1 bins: (-∞, e₀), [e₀, e₁), …, [e_(m-1), +∞).
 */
import { type KllSketch, kllSorted } from './kll.ts';

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
 * Bin edges from a reference sketch, so that each of the `bins` bins holds its share of the
 * reference (1/bins of it) as nearly as the values allow. Edge i sits between two adjacent distinct
 * reference values, halfway, at the place where the share of values below it comes closest to
 * i/bins. 40 distinct values give 10 bins of exactly 4 (edges 4.5, 8.5…, for 1..40); "the first
 * value whose rank reaches i/bins", the plain quantile, gave 3, 4, …, 4, 5. An edge never splits a
 * run of equal values and none lies outside the reference's range, so a feature with few distinct
 * values gets fewer bins. On a compacted sketch, the shares are within its documented rank error.
 */
export function quantileEdges(reference: KllSketch, bins = 10): number[] {
  if (reference.n === 0) return [];
  const { values, cumulative } = kllSorted(reference);
  // Distinct values with the weight at or below each.
  const distinct: number[] = [];
  const upTo: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number;
    if (distinct.length > 0 && distinct[distinct.length - 1] === value) upTo[upTo.length - 1] = cumulative[i] as number;
    else {
      distinct.push(value);
      upTo.push(cumulative[i] as number);
    }
  }
  const total = upTo[upTo.length - 1] as number;
  const edges: number[] = [];
  let j = 0;
  for (let i = 1; i < bins; i++) {
    const target = (i * total) / bins;
    while (j < distinct.length - 1 && (upTo[j] as number) < target) j++;
    // An edge just above distinct[j] leaves upTo[j] below it, one just below leaves upTo[j - 1]: the nearer to the target wins.
    const below = j > 0 ? (upTo[j - 1] as number) : 0;
    const k = (upTo[j] as number) - target <= target - below ? j : j - 1;
    if (k < 0 || k >= distinct.length - 1) continue;
    const lower = distinct[k] as number;
    const edge = lower + ((distinct[k + 1] as number) - lower) / 2;
    if (Number.isFinite(edge) && (edges.length === 0 || edge > (edges[edges.length - 1] as number))) edges.push(edge);
  }
  return edges;
}
