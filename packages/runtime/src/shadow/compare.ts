/**
 * How a shadow candidate's answer compares with the active version's on the same input, output by
 * output (numeric outputs both have, of the same shape):
 *
 * - rows and classes: an output whose last dimension is 2 or more is read as class scores, one row
 *   per leading index; a row *agrees* when both pick the same class (argmax), and its top-k overlap
 *   is the share of the active version's k best classes among the candidate's k best (k = 3, or the
 *   number of classes when fewer);
 * - scores: the largest and the sum of absolute differences, element by element, over every
 *   numeric output (a regression value, an embedding, a mask).
 *
 * An output the candidate lacks, or with another shape, counts as disagreeing on every row.
 */
import type { Outputs, RuntimeTensor } from '../engine/types.ts';

export interface Comparison {
  /** Class rows compared, and those where both picked the same class. */
  readonly rows: number;
  readonly agreed: number;
  /** Sum over rows of the top-k overlap (0-1 each). */
  readonly overlap: number;
  /** Numeric elements compared, their largest and summed absolute difference. */
  readonly elements: number;
  readonly maxAbsDiff: number;
  readonly absDiffSum: number;
}

/** Values read per output at most: a large output (a segmentation mask) is read at an even stride. */
const MAX_ELEMENTS = 65_536;
const TOP_K = 3;

type Numeric = Exclude<RuntimeTensor['data'], readonly string[]>;

function numeric(tensor: RuntimeTensor | undefined): Numeric | undefined {
  if (!tensor || Array.isArray(tensor.data) || tensor.dtype === 'string') return undefined;
  return tensor.data as Numeric;
}

function topK(data: Numeric, offset: number, width: number, k: number): number[] {
  const best: number[] = [];
  for (let c = 0; c < width; c++) {
    const value = Number(data[offset + c]);
    let at = best.length;
    while (at > 0 && value > Number(data[offset + (best[at - 1] as number)])) at--;
    if (at < k) {
      best.splice(at, 0, c);
      if (best.length > k) best.pop();
    }
  }
  return best;
}

export function compareOutputs(active: Outputs, candidate: Outputs): Comparison {
  let rows = 0;
  let agreed = 0;
  let overlap = 0;
  let elements = 0;
  let maxAbsDiff = 0;
  let absDiffSum = 0;
  for (const name in active) {
    const ours = active[name] as RuntimeTensor;
    const a = numeric(ours);
    if (!a) continue;
    const theirs = candidate[name];
    const b = numeric(theirs);
    const width = ours.shape.length > 0 ? (ours.shape[ours.shape.length - 1] as number) : 1;
    const classRows = width >= 2 ? Math.floor(a.length / width) : 0;
    const same = b !== undefined && theirs !== undefined && theirs.shape.join('x') === ours.shape.join('x');
    if (!same) {
      rows += classRows;
      continue;
    }
    const k = Math.min(TOP_K, width);
    const rowStride = Math.max(1, Math.ceil((classRows * width) / MAX_ELEMENTS));
    for (let r = 0; r < classRows; r += rowStride) {
      const offset = r * width;
      const mine = topK(a, offset, width, k);
      const other = topK(b, offset, width, k);
      rows++;
      if (mine[0] === other[0]) agreed++;
      let shared = 0;
      for (const c of mine) if (other.includes(c)) shared++;
      overlap += shared / k;
    }
    const stride = Math.max(1, Math.ceil(a.length / MAX_ELEMENTS));
    for (let i = 0; i < a.length; i += stride) {
      const difference = Math.abs(Number(a[i]) - Number(b[i]));
      // NaN on one side only is as different as it gets.
      const d = Number.isNaN(difference)
        ? Number.isNaN(Number(a[i])) && Number.isNaN(Number(b[i]))
          ? 0
          : Number.POSITIVE_INFINITY
        : difference;
      if (d > maxAbsDiff) maxAbsDiff = d;
      if (Number.isFinite(d)) absDiffSum += d;
      elements++;
    }
  }
  return { rows, agreed, overlap, elements, maxAbsDiff, absDiffSum };
}
