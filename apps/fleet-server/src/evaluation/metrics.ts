import { splitmix } from '@edgefleet/drift';

/**
 * Task metrics of a model version on a labelled held-out dataset, with 95% confidence intervals.
 * Pure and deterministic: the same predictions give the same numbers, bit for bit.
 *
 * - classification (argmax over class scores): accuracy (Wilson interval), per-class precision,
 *   recall and F1, their macro averages, the confusion matrix;
 * - binary (a score against a threshold): the same for the two classes, plus AUC-ROC (the
 *   Mann-Whitney statistic, ties counted half; Hanley & McNeil's interval);
 * - regression: MAE and RMSE (normal intervals from the errors' spread; RMSE through its MSE).
 */

/** z for a two-sided 95% interval. */
const Z = 1.959963984540054;

export interface Interval {
  readonly low: number;
  readonly high: number;
}

export interface ClassMetrics {
  readonly label: string;
  /** Samples whose true label is this class. */
  readonly support: number;
  readonly precision: number;
  /** Wilson interval of the precision (true positives among the predicted). */
  readonly precisionInterval: Interval;
  readonly recall: number;
  /** Wilson interval of the recall (true positives among the actual). */
  readonly recallInterval: Interval;
  readonly f1: number;
}

export interface ClassificationMetrics {
  readonly task: 'classification' | 'binary';
  readonly samples: number;
  readonly accuracy: number;
  readonly accuracyInterval: Interval;
  readonly macroPrecision: number;
  readonly macroRecall: number;
  readonly macroF1: number;
  /** Percentile bootstrap over the confusion matrix (seeded: reproducible); absent past BOOTSTRAP_MAX_CLASSES. */
  readonly macroF1Interval?: Interval;
  readonly classes: readonly ClassMetrics[];
  /** confusion[true][predicted], in the order of `classes`. */
  readonly confusion: readonly (readonly number[])[];
  /** binary only: area under the ROC curve of the score, with its interval. */
  readonly auc?: number;
  readonly aucInterval?: Interval;
}

export interface RegressionMetrics {
  readonly task: 'regression';
  readonly samples: number;
  readonly mae: number;
  readonly maeInterval: Interval;
  readonly rmse: number;
  readonly rmseInterval: Interval;
}

export type TaskMetrics = ClassificationMetrics | RegressionMetrics;

/** The metric names a promotion policy may name, per task; all are "higher is better" except the errors. */
export const METRIC_NAMES = ['accuracy', 'macroPrecision', 'macroRecall', 'macroF1', 'auc', 'mae', 'rmse'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
export const LOWER_IS_BETTER: ReadonlySet<MetricName> = new Set(['mae', 'rmse']);

/** The value of a named metric, or undefined when this task has no such metric. */
export function metricValue(metrics: TaskMetrics, name: MetricName): number | undefined {
  const value = (metrics as unknown as Record<string, unknown>)[name];
  return typeof value === 'number' ? value : undefined;
}

/** Wilson score interval of a proportion (well-behaved at 0, 1 and small n). */
export function wilson(successes: number, n: number): Interval {
  if (n === 0) return { low: 0, high: 1 };
  const p = successes / n;
  const z2 = Z * Z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (Z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/**
 * Accumulates (true class, predicted class) pairs and, for binary tasks, the scores. Memory: the
 * confusion matrix, plus one float per sample for the AUC.
 */
export class ClassificationAccumulator {
  private readonly index = new Map<string, number>();
  private readonly labels: string[] = [];
  private confusion: number[][] = [];
  private readonly positives: number[] = [];
  private readonly negatives: number[] = [];

  constructor(
    private readonly task: 'classification' | 'binary',
    /** Classes known up front (so a class never predicted nor seen still has a row). */
    classes: readonly string[] = [],
  ) {
    for (const label of classes) this.classOf(label);
  }

  private classOf(label: string): number {
    let i = this.index.get(label);
    if (i === undefined) {
      i = this.labels.length;
      this.index.set(label, i);
      this.labels.push(label);
      for (const row of this.confusion) row.push(0);
      this.confusion.push(new Array<number>(this.labels.length).fill(0));
    }
    return i;
  }

  /** One sample. `score` (binary only): the model's score of the positive class, for the AUC. */
  add(truth: string, predicted: string, score?: number): void {
    const t = this.classOf(truth);
    const p = this.classOf(predicted);
    const row = this.confusion[t] as number[];
    row[p] = (row[p] ?? 0) + 1;
    if (score !== undefined) (truth === '1' ? this.positives : this.negatives).push(score);
  }

  result(): ClassificationMetrics {
    const k = this.labels.length;
    const cell = (t: number, p: number) => this.confusion[t]?.[p] ?? 0;
    let samples = 0;
    let correct = 0;
    for (let t = 0; t < k; t++) {
      correct += cell(t, t);
      for (let p = 0; p < k; p++) samples += cell(t, p);
    }
    // Classes in a stable order (numeric labels numerically), the matrix permuted to match.
    const order = [...this.labels.keys()].sort((a, b) => compareLabels(this.labels[a] as string, this.labels[b] as string));
    const classes = order.map((c): ClassMetrics => {
      let predicted = 0;
      let actual = 0;
      for (let i = 0; i < k; i++) {
        predicted += cell(i, c);
        actual += cell(c, i);
      }
      const tp = cell(c, c);
      const precision = predicted === 0 ? 0 : tp / predicted;
      const recall = actual === 0 ? 0 : tp / actual;
      const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
      return {
        label: this.labels[c] as string,
        support: actual,
        precision,
        precisionInterval: wilson(tp, predicted),
        recall,
        recallInterval: wilson(tp, actual),
        f1,
      };
    });
    const mean = (values: number[]) => (values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length);
    const confusion = order.map((t) => order.map((p) => cell(t, p)));
    const macroF1Interval = k <= BOOTSTRAP_MAX_CLASSES && samples > 0 ? macroF1Bootstrap(confusion) : undefined;
    const base: ClassificationMetrics = {
      task: this.task,
      samples,
      accuracy: samples === 0 ? 0 : correct / samples,
      accuracyInterval: wilson(correct, samples),
      macroPrecision: mean(classes.map((c) => c.precision)),
      macroRecall: mean(classes.map((c) => c.recall)),
      macroF1: mean(classes.map((c) => c.f1)),
      ...(macroF1Interval ? { macroF1Interval } : {}),
      classes,
      confusion,
    };
    if (this.task !== 'binary' || this.positives.length === 0 || this.negatives.length === 0) return base;
    const { auc, interval } = aucWithInterval(this.positives, this.negatives);
    return { ...base, auc, aucInterval: interval };
  }
}

/** Classes up to which macro F1 gets a bootstrap interval (each resample draws one count per confusion cell). */
export const BOOTSTRAP_MAX_CLASSES = 50;
const RESAMPLES = 1000;

/** Macro F1 of a confusion matrix. */
function macroF1Of(confusion: readonly (readonly number[])[]): number {
  const k = confusion.length;
  let sum = 0;
  for (let c = 0; c < k; c++) {
    let predicted = 0;
    let actual = 0;
    for (let i = 0; i < k; i++) {
      predicted += confusion[i]?.[c] ?? 0;
      actual += confusion[c]?.[i] ?? 0;
    }
    const tp = confusion[c]?.[c] ?? 0;
    const precision = predicted === 0 ? 0 : tp / predicted;
    const recall = actual === 0 ? 0 : tp / actual;
    sum += precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  }
  return k === 0 ? 0 : sum / k;
}

/** One Binomial(n, p) draw: exact by counting for small n, normal otherwise. */
function binomial(n: number, p: number, random: () => number): number {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  if (n < 50) {
    let x = 0;
    for (let i = 0; i < n; i++) if (random() < p) x++;
    return x;
  }
  // Box-Muller, rounded and clamped: the samples are large enough for the normal approximation.
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.min(n, Math.max(0, Math.round(n * p + z * Math.sqrt(n * p * (1 - p)))));
}

/**
 * 95% percentile bootstrap of macro F1: the samples resampled as a multinomial over the confusion
 * matrix's cells (sequential binomials), RESAMPLES times, from a fixed seed: the same matrix gives
 * the same interval.
 */
function macroF1Bootstrap(confusion: readonly (readonly number[])[]): Interval {
  const random = splitmix(0x5eed);
  const cells = confusion.flat();
  const n = cells.reduce((a, b) => a + b, 0);
  const k = confusion.length;
  const values: number[] = [];
  const draw = new Array<number>(cells.length);
  for (let r = 0; r < RESAMPLES; r++) {
    let left = n;
    let mass = 1;
    for (let i = 0; i < cells.length; i++) {
      const p = (cells[i] as number) / n;
      const x = i === cells.length - 1 ? left : binomial(left, mass <= 0 ? 0 : Math.min(1, p / mass), random);
      draw[i] = x;
      left -= x;
      mass -= p;
    }
    values.push(macroF1Of(Array.from({ length: k }, (_, t) => draw.slice(t * k, t * k + k))));
  }
  values.sort((a, b) => a - b);
  return { low: values[Math.floor(0.025 * RESAMPLES)] as number, high: values[Math.ceil(0.975 * RESAMPLES) - 1] as number };
}

function compareLabels(a: string, b: string): number {
  const x = Number(a);
  const y = Number(b);
  if (a !== '' && b !== '' && Number.isFinite(x) && Number.isFinite(y)) return x - y;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * AUC = P(score of a positive > score of a negative) + ½ P(equal), by ranks in O(n log n), and
 * Hanley & McNeil's (1982) standard error.
 */
export function aucWithInterval(positives: readonly number[], negatives: readonly number[]): { auc: number; interval: Interval } {
  const all = [...positives.map((s) => ({ s, positive: true })), ...negatives.map((s) => ({ s, positive: false }))];
  all.sort((a, b) => a.s - b.s);
  // Mid-ranks: tied scores share the mean of their ranks.
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j + 1 < all.length && (all[j + 1] as { s: number }).s === (all[i] as { s: number }).s) j++;
    const rank = (i + j) / 2 + 1;
    for (let m = i; m <= j; m++) if ((all[m] as { positive: boolean }).positive) rankSum += rank;
    i = j + 1;
  }
  const np = positives.length;
  const nn = negatives.length;
  const auc = (rankSum - (np * (np + 1)) / 2) / (np * nn);
  const q1 = auc / (2 - auc);
  const q2 = (2 * auc * auc) / (1 + auc);
  const variance = (auc * (1 - auc) + (np - 1) * (q1 - auc * auc) + (nn - 1) * (q2 - auc * auc)) / (np * nn);
  const half = Z * Math.sqrt(Math.max(0, variance));
  return { auc, interval: { low: Math.max(0, auc - half), high: Math.min(1, auc + half) } };
}

/** Accumulates (truth, prediction) pairs of a regression: O(1) memory (Welford's sums). */
export class RegressionAccumulator {
  private n = 0;
  private meanAbs = 0;
  private m2Abs = 0;
  private meanSq = 0;
  private m2Sq = 0;

  add(truth: number, predicted: number): void {
    const error = predicted - truth;
    const abs = Math.abs(error);
    const sq = error * error;
    this.n++;
    const dAbs = abs - this.meanAbs;
    this.meanAbs += dAbs / this.n;
    this.m2Abs += dAbs * (abs - this.meanAbs);
    const dSq = sq - this.meanSq;
    this.meanSq += dSq / this.n;
    this.m2Sq += dSq * (sq - this.meanSq);
  }

  result(): RegressionMetrics {
    const n = this.n;
    const se = (m2: number) => (n > 1 ? Math.sqrt(m2 / (n - 1) / n) : 0);
    const maeHalf = Z * se(this.m2Abs);
    const mseHalf = Z * se(this.m2Sq);
    return {
      task: 'regression',
      samples: n,
      mae: this.meanAbs,
      maeInterval: { low: Math.max(0, this.meanAbs - maeHalf), high: this.meanAbs + maeHalf },
      rmse: Math.sqrt(this.meanSq),
      rmseInterval: { low: Math.sqrt(Math.max(0, this.meanSq - mseHalf)), high: Math.sqrt(this.meanSq + mseHalf) },
    };
  }
}
