import { describe, expect, it } from 'vitest';
import { createKll, kllUpdate, rankError } from './kll.ts';
import { normals } from './samples.ts';
import {
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

const sketchOf = (values: number[], k = 200) => {
  const sketch = createKll(k);
  for (const v of values) kllUpdate(sketch, v);
  return sketch;
};

describe('drift statistics against values worked out by hand and published tables', () => {
  it('PSI: 25/25/25/25 against 10/20/30/40 is 0.2282 (by hand: Σ (c−r)·ln(c/r))', () => {
    expect(psi([25, 25, 25, 25], [10, 20, 30, 40])).toBeCloseTo(0.228218, 5);
    expect(psi([3, 5, 7], [3, 5, 7])).toBe(0);
    // An empty current bin is floored at 1e-4 instead of making PSI infinite.
    expect(Number.isFinite(psi([50, 50], [100, 0]))).toBe(true);
    expect(() => psi([1, 2], [1, 2, 3])).toThrow(/bins differ/);
  });

  it('Jensen–Shannon distance: 0 for identical, √ln 2 for disjoint, 0.4645 for [½,½] against [1,0]', () => {
    expect(jensenShannon([1, 1], [5, 5])).toBe(0);
    expect(jensenShannon([1, 0], [0, 1])).toBeCloseTo(Math.sqrt(Math.LN2), 12);
    expect(jensenShannon([1, 1], [1, 0])).toBeCloseTo(0.464502, 5);
  });

  it('chi-square survival matches the table (5% and 1% critical values)', () => {
    expect(chiSquareSurvival(3.841459, 1)).toBeCloseTo(0.05, 6);
    expect(chiSquareSurvival(5.991465, 2)).toBeCloseTo(0.05, 6);
    expect(chiSquareSurvival(11.344867, 3)).toBeCloseTo(0.01, 6);
    expect(chiSquareSurvival(18.307038, 10)).toBeCloseTo(0.05, 6);
    expect(chiSquareSurvival(0, 4)).toBe(1);
  });

  it('chi-square test of homogeneity: 50/50 against 60/40 is χ² = 2.0202, df 1, p = 0.1552 (by hand)', () => {
    // Column totals 110 and 90 over 200: expected 55/45 in each row; χ² = 2 · (25/55 + 25/45).
    const result = chiSquare([50, 50], [60, 40]);
    expect(result.statistic).toBeCloseTo(2 * (25 / 55 + 25 / 45), 12);
    expect(result.df).toBe(1);
    expect(result.pValue).toBeCloseTo(0.1552, 4);
    // A category only the current sample has is no division by zero.
    expect(chiSquare([100, 100, 0], [90, 90, 20]).pValue).toBeLessThan(1e-4);
    expect(chiSquare([0, 0], [1, 2]).pValue).toBe(1);
  });

  it('Kolmogorov distribution: P(K > 1.3581) = 0.05 and P(K > 1.6276) = 0.01', () => {
    expect(kolmogorovSurvival(1.3581)).toBeCloseTo(0.05, 4);
    expect(kolmogorovSurvival(1.6276)).toBeCloseTo(0.01, 4);
    expect(kolmogorovSurvival(0.1)).toBe(1);
  });

  it('KS statistic: [1..5] against [3..7] is 0.4; identical samples 0; disjoint 1', () => {
    expect(ksStatistic([1, 2, 3, 4, 5], [3, 4, 5, 6, 7])).toBeCloseTo(0.4, 12);
    expect(ksStatistic([1, 2, 3], [1, 2, 3])).toBe(0);
    expect(ksStatistic([1, 2], [3, 4])).toBe(1);
    expect(ksPValue(0.4, 5, 5)).toBeGreaterThan(0.5);
    expect(ksPValue(0.1, 5000, 5000)).toBeLessThan(1e-10);
  });

  it('the sketch-based KS stays within the documented error of the exact KS on raw data', () => {
    for (const [shift, seed] of [
      [0, 1],
      [0.05, 2],
      [0.2, 3],
      [1, 4],
    ] as const) {
      const reference = normals(50_000, seed);
      const current = normals(50_000, seed + 100, shift);
      const exact = ksStatistic(reference, current);
      const estimated = ksFromSketches(sketchOf(reference), sketchOf(current));
      expect(Math.abs(estimated - exact)).toBeLessThanOrEqual(2 * rankError(200));
    }
  });

  it('Wasserstein-1: constant 0 against constant 1 is 1; a normal shifted by 0.5 is about 0.5', () => {
    expect(wasserstein(sketchOf([0, 0, 0]), sketchOf([1, 1, 1, 1]))).toBeCloseTo(1, 12);
    expect(wasserstein(sketchOf(normals(20_000, 5)), sketchOf(normals(20_000, 6, 0.5)))).toBeCloseTo(0.5, 1);
  });
});
