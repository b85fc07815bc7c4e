/**
 * Drift statistics between a reference and a current sample, computed from what profiles keep
 * (counts over shared bins, sketches), never from raw data. Each function is the textbook one;
 * the tests check them against values worked out by hand and against published tables.
 */
import { type KllSketch, kllQuantile, kllSorted } from './kll.ts';

/**
 * Population Stability Index over the same bins: Σ (c - r) · ln(c / r) on proportions, an empty
 * bin counted as `epsilon` (so one empty bin does not make it infinite). 0 is identical; the usual
 * reading is < 0.1 stable, 0.1–0.2 some change, > 0.2 a significant shift.
 */
export function psi(reference: readonly number[], current: readonly number[], epsilon = 1e-4): number {
  const [r, c] = proportions(reference, current, epsilon);
  let sum = 0;
  for (let i = 0; i < r.length; i++) sum += ((c[i] as number) - (r[i] as number)) * Math.log((c[i] as number) / (r[i] as number));
  return sum;
}

/**
 * Jensen–Shannon distance (the square root of the divergence, natural log, as scipy's
 * `jensenshannon`): 0 for identical distributions, √ln 2 ≈ 0.8326 for disjoint ones.
 */
export function jensenShannon(reference: readonly number[], current: readonly number[]): number {
  const [r, c] = proportions(reference, current, 0);
  let divergence = 0;
  for (let i = 0; i < r.length; i++) {
    const p = r[i] as number;
    const q = c[i] as number;
    const m = (p + q) / 2;
    if (p > 0) divergence += 0.5 * p * Math.log(p / m);
    if (q > 0) divergence += 0.5 * q * Math.log(q / m);
  }
  return Math.sqrt(Math.max(0, divergence));
}

/**
 * Pearson's chi-square test of homogeneity: are the reference and current counts draws from the
 * same categorical distribution? The 2 × k contingency table's statistic, k − 1 degrees of freedom
 * (categories empty in both are dropped) and p-value, as scipy's `chi2_contingency` without the
 * continuity correction. Unlike a goodness-of-fit test against the reference's proportions, it
 * counts the reference's own sampling noise, so two samples of one distribution are flagged at the
 * advertised 5%, not more; a category the reference never saw needs no fudge.
 */
export function chiSquare(reference: readonly number[], current: readonly number[]): { statistic: number; df: number; pValue: number } {
  if (reference.length !== current.length) throw new RangeError(`bins differ: ${reference.length} reference, ${current.length} current`);
  const rTotal = reference.reduce((a, b) => a + b, 0);
  const cTotal = current.reduce((a, b) => a + b, 0);
  const total = rTotal + cTotal;
  if (rTotal === 0 || cTotal === 0) return { statistic: 0, df: 0, pValue: 1 };
  let statistic = 0;
  let used = 0;
  for (let i = 0; i < reference.length; i++) {
    const column = (reference[i] ?? 0) + (current[i] ?? 0);
    if (column === 0) continue;
    used++;
    const rExpected = (column * rTotal) / total;
    const cExpected = (column * cTotal) / total;
    statistic += ((reference[i] ?? 0) - rExpected) ** 2 / rExpected + ((current[i] ?? 0) - cExpected) ** 2 / cExpected;
  }
  const df = used - 1;
  return { statistic, df, pValue: df < 1 ? 1 : chiSquareSurvival(statistic, df) };
}

/** Two-sample Kolmogorov–Smirnov statistic on raw values: the largest gap between the two empirical CDFs. */
export function ksStatistic(reference: readonly number[], current: readonly number[]): number {
  const a = Float64Array.from(reference).sort();
  const b = Float64Array.from(current).sort();
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < a.length && j < b.length) {
    const x = Math.min(a[i] as number, b[j] as number);
    while (i < a.length && (a[i] as number) <= x) i++;
    while (j < b.length && (b[j] as number) <= x) j++;
    d = Math.max(d, Math.abs(i / a.length - j / b.length));
  }
  return d;
}

/**
 * The KS statistic between two sketches: the largest gap between their estimated CDFs, checked at
 * every value either retains. Within rankError(kA) + rankError(kB) of the exact statistic.
 */
export function ksFromSketches(reference: KllSketch, current: KllSketch): number {
  if (reference.n === 0 || current.n === 0) return Number.NaN;
  // Both CDFs sorted once; then one merge-like walk over every retained value.
  const a = kllSorted(reference);
  const b = kllSorted(current);
  const totalA = a.cumulative[a.cumulative.length - 1] as number;
  const totalB = b.cumulative[b.cumulative.length - 1] as number;
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < a.values.length || j < b.values.length) {
    const x = Math.min(a.values[i] ?? Number.POSITIVE_INFINITY, b.values[j] ?? Number.POSITIVE_INFINITY);
    while (i < a.values.length && (a.values[i] as number) <= x) i++;
    while (j < b.values.length && (b.values[j] as number) <= x) j++;
    const fa = i === 0 ? 0 : (a.cumulative[i - 1] as number) / totalA;
    const fb = j === 0 ? 0 : (b.cumulative[j - 1] as number) / totalB;
    d = Math.max(d, Math.abs(fa - fb));
  }
  return d;
}

/**
 * Asymptotic p-value of a two-sample KS statistic (Kolmogorov distribution with the effective size
 * n·m/(n+m) and Stephens' correction, as in Numerical Recipes).
 */
export function ksPValue(d: number, n: number, m: number): number {
  const effective = Math.sqrt((n * m) / (n + m));
  return kolmogorovSurvival((effective + 0.12 + 0.11 / effective) * d);
}

/** P(K > λ) for the Kolmogorov distribution: 2 Σ (-1)^(k-1) e^(-2k²λ²). */
export function kolmogorovSurvival(lambda: number): number {
  if (lambda < 0.2) return 1;
  let sum = 0;
  let sign = 1;
  for (let k = 1; k <= 100; k++) {
    const term = sign * Math.exp(-2 * k * k * lambda * lambda);
    sum += term;
    if (Math.abs(term) < 1e-12 * Math.abs(sum)) break;
    sign = -sign;
  }
  return Math.min(1, Math.max(0, 2 * sum));
}

/**
 * Wasserstein-1 (earth mover's) distance between two sketches: ∫₀¹ |Q_ref(u) − Q_cur(u)| du, on
 * `points` evenly spaced quantiles. In the feature's units; divide by the reference's standard
 * deviation for Evidently's "normed" reading (> 0.1 is drift).
 */
export function wasserstein(reference: KllSketch, current: KllSketch, points = 256): number {
  if (reference.n === 0 || current.n === 0) return Number.NaN;
  let sum = 0;
  for (let i = 0; i < points; i++) {
    const u = (i + 0.5) / points;
    sum += Math.abs(kllQuantile(reference, u) - kllQuantile(current, u));
  }
  return sum / points;
}

function proportions(reference: readonly number[], current: readonly number[], epsilon: number): [number[], number[]] {
  if (reference.length !== current.length) throw new RangeError(`bins differ: ${reference.length} reference, ${current.length} current`);
  const normalize = (counts: readonly number[]) => {
    const total = counts.reduce((a, b) => a + b, 0);
    const shares = counts.map((c) => (total === 0 ? 0 : c / total));
    if (epsilon === 0) return shares;
    const floored = shares.map((s) => Math.max(s, epsilon));
    const sum = floored.reduce((a, b) => a + b, 0);
    return floored.map((s) => s / sum);
  };
  return [normalize(reference), normalize(current)];
}

// --- chi-square survival: the regularized upper incomplete gamma Q(df/2, x/2) -------------------

/** P(X > x) for X ~ χ²(df). */
export function chiSquareSurvival(x: number, df: number): number {
  if (x <= 0) return 1;
  return regularizedGammaQ(df / 2, x / 2);
}

function logGamma(z: number): number {
  // Lanczos approximation (g = 7, n = 9), accurate to ~15 digits for z > 0.
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - logGamma(1 - z);
  const x = z - 1;
  let a = c[0] as number;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += (c[i] as number) / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

function regularizedGammaQ(a: number, x: number): number {
  if (x < a + 1) {
    // Series for P, then Q = 1 - P.
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < 1000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
    }
    return Math.max(0, 1 - sum * Math.exp(-x + a * Math.log(x) - logGamma(a)));
  }
  // Continued fraction for Q (modified Lentz).
  let b = x + 1 - a;
  let c = 1 / 1e-300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.min(1, Math.exp(-x + a * Math.log(x) - logGamma(a)) * h);
}
