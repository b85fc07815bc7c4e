import { splitmix } from '@edgefleet/drift';
import { describe, expect, it } from 'vitest';
import { aucWithInterval, ClassificationAccumulator, RegressionAccumulator, wilson } from './metrics.ts';

/** Independent, naive definitions: counted straight from the pairs, no shared code. */
function naive(pairs: readonly [string, string][]) {
  const labels = [...new Set(pairs.flat())].sort((a, b) => Number(a) - Number(b));
  const per = labels.map((c) => {
    const tp = pairs.filter(([t, p]) => t === c && p === c).length;
    const predicted = pairs.filter(([, p]) => p === c).length;
    const actual = pairs.filter(([t]) => t === c).length;
    const precision = predicted ? tp / predicted : 0;
    const recall = actual ? tp / actual : 0;
    return { label: c, precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0, support: actual };
  });
  return {
    accuracy: pairs.filter(([t, p]) => t === p).length / pairs.length,
    per,
    macroF1: per.reduce((s, c) => s + c.f1, 0) / per.length,
  };
}

describe('task metrics', () => {
  it('counts accuracy, per-class and macro precision/recall/F1 as their definitions do', () => {
    const random = splitmix(3);
    const pairs: [string, string][] = Array.from({ length: 997 }, () => {
      const truth = String(Math.floor(random() * 4));
      return [truth, random() < 0.7 ? truth : String(Math.floor(random() * 4))];
    });
    const accumulator = new ClassificationAccumulator('classification');
    for (const [t, p] of pairs) accumulator.add(t, p);
    const metrics = accumulator.result();
    const expected = naive(pairs);
    expect(metrics.samples).toBe(997);
    expect(metrics.accuracy).toBeCloseTo(expected.accuracy, 12);
    expect(metrics.macroF1).toBeCloseTo(expected.macroF1, 12);
    expect(metrics.classes.map((c) => c.label)).toEqual(['0', '1', '2', '3']);
    for (const [i, c] of metrics.classes.entries()) {
      const e = expected.per[i];
      expect(c.precision).toBeCloseTo(e?.precision ?? -1, 12);
      expect(c.recall).toBeCloseTo(e?.recall ?? -1, 12);
      expect(c.f1).toBeCloseTo(e?.f1 ?? -1, 12);
      expect(c.support).toBe(e?.support);
    }
    expect(metrics.confusion.flat().reduce((a, b) => a + b, 0)).toBe(997);
    expect(metrics.accuracyInterval.low).toBeLessThan(metrics.accuracy);
    expect(metrics.accuracyInterval.high).toBeGreaterThan(metrics.accuracy);
  });

  it('gives each class Wilson intervals, and macro F1 a seeded bootstrap interval that narrows with more samples', () => {
    const build = (n: number) => {
      const random = splitmix(21);
      const accumulator = new ClassificationAccumulator('classification');
      for (let i = 0; i < n; i++) {
        const truth = String(Math.floor(random() * 3));
        accumulator.add(truth, random() < 0.8 ? truth : String(Math.floor(random() * 3)));
      }
      return accumulator.result();
    };
    const small = build(500);
    const large = build(8000);
    for (const c of small.classes) {
      expect(c.precisionInterval.low).toBeLessThanOrEqual(c.precision);
      expect(c.precisionInterval.high).toBeGreaterThanOrEqual(c.precision);
      expect(c.recallInterval.low).toBeLessThanOrEqual(c.recall);
      expect(c.recallInterval.high).toBeGreaterThanOrEqual(c.recall);
    }
    const width = (m: typeof small) => (m.macroF1Interval?.high ?? 0) - (m.macroF1Interval?.low ?? 1);
    expect(small.macroF1Interval?.low).toBeLessThan(small.macroF1);
    expect(small.macroF1Interval?.high).toBeGreaterThan(small.macroF1);
    // 16 times the samples: about a quarter of the width (the standard error goes with 1/sqrt(n)).
    expect(width(large) / width(small)).toBeGreaterThan(0.15);
    expect(width(large) / width(small)).toBeLessThan(0.4);
    // Reproducible: the same matrix, the same interval.
    expect(build(500).macroF1Interval).toEqual(small.macroF1Interval);
  });

  it('gives a class that is never predicted precision 0, and orders numeric labels numerically', () => {
    const accumulator = new ClassificationAccumulator('classification', ['10', '2']);
    accumulator.add('2', '2');
    accumulator.add('10', '2');
    const metrics = accumulator.result();
    expect(metrics.classes.map((c) => [c.label, c.precision, c.recall])).toEqual([
      ['2', 0.5, 1],
      ['10', 0, 0],
    ]);
    expect(metrics.confusion).toEqual([
      [1, 0],
      [1, 0],
    ]);
  });

  it('matches published Wilson intervals', () => {
    // Newcombe (1998), table I: 0/10 → 0–0.2775, 81/263 → 0.2553–0.3662 (Wilson, no continuity correction).
    expect(wilson(0, 10).low).toBe(0);
    expect(wilson(0, 10).high).toBeCloseTo(0.2775, 4);
    expect(wilson(81, 263).low).toBeCloseTo(0.2553, 4);
    expect(wilson(81, 263).high).toBeCloseTo(0.3662, 4);
  });

  it('computes the AUC as the share of correctly ordered positive/negative pairs, ties half', () => {
    const random = splitmix(9);
    const positives = Array.from({ length: 150 }, () => Math.round((random() + 0.3) * 20) / 20);
    const negatives = Array.from({ length: 230 }, () => Math.round(random() * 20) / 20);
    let wins = 0;
    for (const p of positives) for (const n of negatives) wins += p > n ? 1 : p === n ? 0.5 : 0;
    const { auc, interval } = aucWithInterval(positives, negatives);
    expect(auc).toBeCloseTo(wins / (150 * 230), 12);
    // Hanley & McNeil (1982), equation 2, written out again.
    const q1 = auc / (2 - auc);
    const q2 = (2 * auc ** 2) / (1 + auc);
    const se = Math.sqrt((auc * (1 - auc) + 149 * (q1 - auc ** 2) + 229 * (q2 - auc ** 2)) / (150 * 230));
    expect(interval.high - interval.low).toBeCloseTo(2 * 1.96 * se, 3);
    const binary = new ClassificationAccumulator('binary');
    for (const s of positives) binary.add('1', s >= 0.5 ? '1' : '0', s);
    for (const s of negatives) binary.add('0', s >= 0.5 ? '1' : '0', s);
    expect(binary.result().auc).toBeCloseTo(auc, 12);
  });

  it('computes MAE and RMSE with intervals that hold the truth', () => {
    const random = splitmix(5);
    const errors = Array.from({ length: 2000 }, () => (random() - 0.5) * 2);
    const accumulator = new RegressionAccumulator();
    for (const [i, e] of errors.entries()) accumulator.add(i, i + e);
    const metrics = accumulator.result();
    const mae = errors.reduce((s, e) => s + Math.abs(e), 0) / errors.length;
    const rmse = Math.sqrt(errors.reduce((s, e) => s + e * e, 0) / errors.length);
    expect(metrics.mae).toBeCloseTo(mae, 10);
    expect(metrics.rmse).toBeCloseTo(rmse, 10);
    // Uniform(-1, 1) errors: E|e| = 0.5, E e² = 1/3.
    expect(metrics.maeInterval.low).toBeLessThan(0.5);
    expect(metrics.maeInterval.high).toBeGreaterThan(0.5);
    expect(metrics.rmseInterval.low).toBeLessThan(Math.sqrt(1 / 3));
    expect(metrics.rmseInterval.high).toBeGreaterThan(Math.sqrt(1 / 3));
  });
});
