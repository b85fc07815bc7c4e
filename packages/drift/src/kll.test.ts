import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createKll, type KllSketch, kllMerge, kllQuantile, kllRank, kllUpdate, rankError } from './kll.ts';
import { normals, rng } from './samples.ts';

function sketchOf(values: readonly number[], k = 200): KllSketch {
  const sketch = createKll(k);
  for (const v of values) kllUpdate(sketch, v);
  return sketch;
}

/** The largest gap, over 99 evenly spaced ranks, between the sketch's rank of its q-quantile and q. */
function worstRankError(sketch: KllSketch, sorted: Float64Array): number {
  let worst = 0;
  for (let i = 1; i < 100; i++) {
    const q = i / 100;
    const estimate = kllQuantile(sketch, q);
    // True rank of the estimate: the share of values below it, and at or below it.
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((sorted[mid] as number) < estimate) lo = mid + 1;
      else hi = mid;
    }
    let upper = lo;
    while (upper < sorted.length && sorted[upper] === estimate) upper++;
    const below = lo / sorted.length;
    const atOrBelow = upper / sorted.length;
    const error = q < below ? below - q : q > atOrBelow ? q - atOrBelow : 0;
    worst = Math.max(worst, error);
  }
  return worst;
}

describe('KLL quantile sketch', () => {
  it('documents its rank error: 1.33% at k = 200, 2.6% at k = 100', () => {
    expect(rankError(200)).toBeCloseTo(0.0133, 3);
    expect(rankError(100)).toBeCloseTo(0.0261, 3);
  });

  it('stays within the documented rank error on 200,000 values of several shapes, and keeps a few hundred items', () => {
    const next = rng(9);
    const shapes: Record<string, number[]> = {
      normal: normals(200_000, 1),
      uniform: Array.from({ length: 200_000 }, next),
      sorted: Array.from({ length: 200_000 }, (_, i) => i),
      'heavy tail': Array.from({ length: 200_000 }, () => 1 / Math.max(next(), 1e-9)),
      'few distinct values': Array.from({ length: 200_000 }, () => Math.floor(next() * 5)),
    };
    for (const [name, values] of Object.entries(shapes)) {
      for (const k of [100, 200]) {
        const sketch = sketchOf(values, k);
        const sorted = Float64Array.from(values).sort();
        expect(worstRankError(sketch, sorted), `${name}, k = ${k}`).toBeLessThanOrEqual(rankError(k));
        expect(sketch.levels.flat().length, `${name}, k = ${k}`).toBeLessThan(4 * k);
        expect(sketch.n).toBe(200_000);
        expect(kllQuantile(sketch, 0)).toBe(sorted[0]);
        expect(kllQuantile(sketch, 1)).toBe(sorted[sorted.length - 1]);
      }
    }
  });

  it('merges 20 device sketches into one that is as accurate as a sketch of all the values', () => {
    const parts = Array.from({ length: 20 }, (_, i) => normals(10_000, 100 + i, i % 3));
    const merged = parts.map((p) => sketchOf(p)).reduce((a, b) => kllMerge(a, b));
    const sorted = Float64Array.from(parts.flat()).sort();
    expect(merged.n).toBe(200_000);
    expect(worstRankError(merged, sorted)).toBeLessThanOrEqual(rankError(200));
  });

  it('merge is commutative exactly and associative within the rank error (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 600 }),
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 600 }),
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 600 }),
        (a, b, c) => {
          const [sa, sb, sc] = [sketchOf(a, 32), sketchOf(b, 32), sketchOf(c, 32)];
          expect(kllMerge(sa, sb)).toEqual(kllMerge(sb, sa));
          const left = kllMerge(kllMerge(sa, sb), sc);
          const right = kllMerge(sa, kllMerge(sb, sc));
          expect(left.n).toBe(a.length + b.length + c.length);
          expect(right.n).toBe(left.n);
          expect(left.min).toBe(right.min);
          expect(left.max).toBe(right.max);
          if (left.n === 0) return;
          const sorted = Float64Array.from([...a, ...b, ...c]).sort();
          // Small inputs: twice the single-query bound (a sketch this size answers 99 queries at once).
          expect(worstRankError(left, sorted)).toBeLessThanOrEqual(2 * rankError(32));
          expect(worstRankError(right, sorted)).toBeLessThanOrEqual(2 * rankError(32));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('answers ranks: the share of values at or below x', () => {
    const sketch = sketchOf([1, 2, 3, 4]);
    expect(kllRank(sketch, 0)).toBe(0);
    expect(kllRank(sketch, 2)).toBe(0.5);
    expect(kllRank(sketch, 10)).toBe(1);
    expect(kllQuantile(createKll(), 0.5)).toBeNaN();
  });

  it('refuses what it cannot summarize', () => {
    expect(() => kllUpdate(createKll(), Number.NaN)).toThrow(RangeError);
    expect(() => kllUpdate(createKll(), Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => createKll(4)).toThrow(/k must be/);
    expect(() => kllMerge(createKll(100), createKll(200))).toThrow(/cannot merge/);
  });
});
