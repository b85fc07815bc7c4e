import { describe, expect, it } from 'vitest';
import { createHistogram, histogramAdd, quantileEdges } from './histogram.ts';
import { createKll, kllUpdate } from './kll.ts';
import { jensenShannon, psi } from './stats.ts';

function sketchOf(values: readonly number[]) {
  const sketch = createKll(200);
  for (const value of values) kllUpdate(sketch, value);
  return sketch;
}

function countsOf(values: readonly number[], edges: readonly number[]): number[] {
  const histogram = createHistogram(edges);
  for (const value of values) histogramAdd(histogram, value);
  return histogram.counts;
}

describe('reference bins', () => {
  it('give each bin its share of a small reference: 40 values, 10 bins of 4', () => {
    const reference = Array.from({ length: 40 }, (_, i) => i + 1); // 1..40
    const edges = quantileEdges(sketchOf(reference), 10);
    // Halfway between the values on either side of each tenth: 4.5, 8.5, ... 36.5.
    expect(edges).toEqual([4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5, 36.5]);
    expect(countsOf(reference, edges)).toEqual(new Array(10).fill(4));
  });

  it('computes PSI and Jensen–Shannon on those bins as worked out by hand (docs/drift.md)', () => {
    const reference = Array.from({ length: 40 }, (_, i) => i + 1);
    const current = Array.from({ length: 40 }, (_, i) => i + 9); // 9..48: the same spread, shifted by two bins
    const edges = quantileEdges(sketchOf(reference), 10);
    const r = countsOf(reference, edges);
    const c = countsOf(current, edges);
    expect(c).toEqual([0, 0, 4, 4, 4, 4, 4, 4, 4, 12]);
    // PSI = Σ (c−r)·ln(c/r) on shares, an empty bin counted as 1e-4 and the shares renormalized:
    // c = 1e-4/1.0002 (twice), 0.1/1.0002 (seven times), 0.3/1.0002; r = 0.1 everywhere.
    const sum = 2e-4 + 0.7 + 0.3;
    const term = (share: number) => (share / sum - 0.1) * Math.log(share / sum / 0.1);
    expect(psi(r, c)).toBeCloseTo(2 * term(1e-4) + 7 * term(0.1) + term(0.3), 12);
    expect(psi(r, c)).toBeCloseTo(1.59983, 5); // 2 × 0.69011 + 7 × 0.00000 + 0.21962
    // Jensen–Shannon distance (scipy.spatial.distance.jensenshannon, natural log): with m = (r + c)/2,
    // KL(r‖m) = 0.1·ln 2 and KL(c‖m) = 0.3·ln 1.5, so √((0.069315 + 0.121640)/2) = 0.30900.
    expect(jensenShannon(r, c)).toBeCloseTo(Math.sqrt((0.1 * Math.LN2 + 0.3 * Math.log(1.5)) / 2), 12);
    expect(jensenShannon(r, c)).toBeCloseTo(0.309, 3);
  });

  it('puts no edge inside a run of equal values, and gives few distinct values fewer bins', () => {
    const reference = [...new Array(30).fill(1), ...new Array(10).fill(2)];
    const edges = quantileEdges(sketchOf(reference), 10);
    expect(edges).toEqual([1.5]);
    expect(countsOf(reference, edges)).toEqual([30, 10]);
    expect(quantileEdges(sketchOf(new Array(50).fill(7)), 10)).toEqual([]);
  });

  it('stays within the sketch rank error on a large reference (200,000 values, compacted)', () => {
    const values = Array.from(
      { length: 200_000 },
      (_, i) => Math.sin(i * 12.9898) * 43758.5453 - Math.floor(Math.sin(i * 12.9898) * 43758.5453),
    );
    const edges = quantileEdges(sketchOf(values), 10);
    expect(edges).toHaveLength(9);
    for (const count of countsOf(values, edges)) expect(Math.abs(count / values.length - 0.1)).toBeLessThan(0.0133 * 2);
  });
});
