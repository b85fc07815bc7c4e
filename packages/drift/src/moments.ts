/**
 * Mergeable summary statistics of one numeric feature: counts of what was seen (missing, NaN,
 * ±Infinity are counted, not folded into the numbers), min, max, mean and the sum of squared
 * deviations (M2). Updates use Welford's method; merges use Chan, Golub and LeVeque's pairwise
 * formula, so merging is associative and commutative up to floating-point rounding.
 */
export interface Moments {
  /** Finite values folded in. */
  count: number;
  missing: number;
  nan: number;
  posInf: number;
  negInf: number;
  /** +Infinity / -Infinity while count is 0. */
  min: number;
  max: number;
  mean: number;
  /** Σ (x - mean)² over the finite values. */
  m2: number;
}

export function emptyMoments(): Moments {
  return {
    count: 0,
    missing: 0,
    nan: 0,
    posInf: 0,
    negInf: 0,
    min: Number.POSITIVE_INFINITY,
    max: Number.NEGATIVE_INFINITY,
    mean: 0,
    m2: 0,
  };
}

/** Folds one value in: null/undefined count as missing. */
export function addValue(moments: Moments, value: number | null | undefined): void {
  if (value === null || value === undefined) {
    moments.missing++;
    return;
  }
  if (Number.isNaN(value)) {
    moments.nan++;
    return;
  }
  if (value === Number.POSITIVE_INFINITY) {
    moments.posInf++;
    return;
  }
  if (value === Number.NEGATIVE_INFINITY) {
    moments.negInf++;
    return;
  }
  // -0 and 0 are the same observation: keep min/max independent of which came first.
  if (value === 0) value = 0;
  moments.count++;
  const delta = value - moments.mean;
  moments.mean += delta / moments.count;
  moments.m2 += delta * (value - moments.mean);
  if (value < moments.min) moments.min = value;
  if (value > moments.max) moments.max = value;
}

export function mergeMoments(a: Moments, b: Moments): Moments {
  const count = a.count + b.count;
  const delta = b.mean - a.mean;
  return {
    count,
    missing: a.missing + b.missing,
    nan: a.nan + b.nan,
    posInf: a.posInf + b.posInf,
    negInf: a.negInf + b.negInf,
    min: Math.min(a.min, b.min),
    max: Math.max(a.max, b.max),
    // Written symmetrically so merge(a, b) and merge(b, a) are equal to the bit.
    mean: count === 0 ? 0 : (a.mean * a.count + b.mean * b.count) / count,
    m2: count === 0 ? 0 : a.m2 + b.m2 + delta * delta * ((a.count * b.count) / count),
  };
}

/** Sample variance (n - 1); 0 below two values. */
export function variance(moments: Moments): number {
  return moments.count < 2 ? 0 : moments.m2 / (moments.count - 1);
}

/** Everything seen, finite or not. */
export function totalSeen(moments: Moments): number {
  return moments.count + moments.missing + moments.nan + moments.posInf + moments.negInf;
}
