/**
 * Tensor data as carried by golden vectors: raw little-endian element bytes, base64url encoded,
 * decoded into the typed array onnxruntime expects for the dtype.
 */
import { fromBase64Url, toBase64Url } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';
import type { BinaryDtype, Dimension, TensorData, TensorSpec, Tolerance } from '../schemas/index.ts';

export type TensorArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** Bytes per element; float16 travels as its raw 16 bits (Uint16Array), bool as one byte. */
export const DTYPE_BYTES: Readonly<Record<BinaryDtype, number>> = {
  float32: 4,
  float16: 2,
  float64: 8,
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
  bool: 1,
};

const ARRAY_TYPES = {
  float32: Float32Array,
  float16: Uint16Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
} as const;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

export interface DecodedTensor {
  readonly name: string;
  readonly dtype: BinaryDtype;
  readonly shape: readonly number[];
  readonly data: TensorArray;
}

export function encodeTensor(name: string, dtype: BinaryDtype, shape: readonly number[], data: TensorArray): TensorData {
  const count = elementCount(shape);
  if (data.length !== count) {
    throw new EdgefleetError(
      'EF_TENSOR_INVALID',
      `tensor "${name}" has ${data.length} elements, shape [${shape.join(',')}] needs ${count}`,
    );
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  if (!LITTLE_ENDIAN) swapBytes(bytes, DTYPE_BYTES[dtype]);
  return { name, dtype, shape: [...shape], data: toBase64Url(bytes) };
}

export function decodeTensor(tensor: TensorData): DecodedTensor {
  const bytes = fromBase64Url(tensor.data, 'EF_TENSOR_INVALID');
  const width = DTYPE_BYTES[tensor.dtype];
  const count = elementCount(tensor.shape);
  if (bytes.length !== count * width) {
    throw new EdgefleetError(
      'EF_TENSOR_INVALID',
      `tensor "${tensor.name}" holds ${bytes.length} bytes; ${tensor.dtype} [${tensor.shape.join(',')}] needs ${count * width}`,
      { details: { name: tensor.name } },
    );
  }
  if (!LITTLE_ENDIAN) swapBytes(bytes, width);
  const ArrayType = ARRAY_TYPES[tensor.dtype];
  return {
    name: tensor.name,
    dtype: tensor.dtype,
    shape: tensor.shape,
    data: new ArrayType(bytes.buffer as ArrayBuffer, bytes.byteOffset, count),
  };
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

/**
 * Does a concrete shape fit a declared one? Fixed dims must be equal; symbolic dims take any size.
 * A declared scalar ([]) takes any tensor of exactly one element ([], [1], [1, 1]...), as
 * onnxruntime does (measured with onnxruntime-web and -node 1.30: it does not check a scalar's rank).
 */
export function shapeFits(declared: readonly Dimension[], actual: readonly number[]): boolean {
  if (declared.length === 0) return actual.every((dim) => dim === 1);
  return declared.length === actual.length && declared.every((dim, i) => typeof dim === 'string' || dim === actual[i]);
}

/**
 * A symbolic dimension named in several tensors (`batch` in input, h and c) is one size: the first
 * mismatch, in words, or undefined. "?" names nothing and binds nothing. Shapes must already fit
 * their declarations (same rank).
 */
export function findSharedDimensionMismatch(
  tensors: readonly { readonly spec: TensorSpec; readonly shape: readonly number[]; readonly kind: string }[],
): string | undefined {
  const bound = new Map<string, { size: number; where: string }>();
  for (const { spec, shape, kind } of tensors) {
    for (let axis = 0; axis < spec.shape.length; axis++) {
      const dim = spec.shape[axis];
      if (typeof dim !== 'string' || dim === '?') continue;
      const size = shape[axis] as number;
      const seen = bound.get(dim);
      if (!seen) bound.set(dim, { size, where: `${kind} "${spec.name}"` });
      else if (seen.size !== size) return `dimension "${dim}" is ${seen.size} in ${seen.where} but ${size} in ${kind} "${spec.name}"`;
    }
  }
  return undefined;
}

/** Checks a concrete tensor against its declaration; the message says which part does not fit. */
export function checkTensorAgainstSpec(tensor: { name: string; dtype: string; shape: readonly number[] }, spec: TensorSpec): void {
  if (tensor.dtype !== spec.dtype) {
    throw new EdgefleetError('EF_TENSOR_INVALID', `tensor "${tensor.name}" is ${tensor.dtype}, the model declares ${spec.dtype}`, {
      details: { name: tensor.name, expected: spec.dtype, actual: tensor.dtype },
    });
  }
  if (!shapeFits(spec.shape, tensor.shape)) {
    throw new EdgefleetError(
      'EF_TENSOR_INVALID',
      `tensor "${tensor.name}" has shape [${tensor.shape.join(',')}], the model declares [${spec.shape.join(',')}]`,
      { details: { name: tensor.name, expected: spec.shape, actual: tensor.shape } },
    );
  }
}

export interface ToleranceReport {
  readonly ok: boolean;
  /** Largest |actual - expected| seen (inside the tolerance or not). */
  readonly maxAbsoluteError: number;
  /** How many elements are outside the tolerance. */
  readonly outside: number;
  /**
   * The worst element outside the tolerance: the largest |actual - expected| among them (a NaN or
   * infinity where another value was expected counts as infinite), or -1 when none is.
   */
  readonly worst: number;
  /** |actual - expected| of the worst element (Infinity for NaN or infinity mismatches). */
  readonly worstError: number;
}

/**
 * Compares outputs element-wise: |actual - expected| <= absolute + relative * |expected|. NaN
 * matches only NaN; infinities must be equal. Integer dtypes compare exactly when both tolerances
 * are zero and otherwise as numbers.
 */
export function compareWithTolerance(expected: TensorArray, actual: TensorArray, tolerance: Tolerance): ToleranceReport {
  if (expected.length !== actual.length) {
    return {
      ok: false,
      maxAbsoluteError: Number.POSITIVE_INFINITY,
      outside: expected.length,
      worst: 0,
      worstError: Number.POSITIVE_INFINITY,
    };
  }
  let maxAbsoluteError = 0;
  let outside = 0;
  let worst = -1;
  let worstError = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = Number(expected[i]);
    const a = Number(actual[i]);
    let within: boolean;
    let error: number;
    if (Number.isNaN(e) || Number.isNaN(a)) {
      within = Number.isNaN(e) && Number.isNaN(a);
      error = within ? 0 : Number.POSITIVE_INFINITY;
    } else if (!Number.isFinite(e) || !Number.isFinite(a)) {
      within = e === a;
      error = within ? 0 : Number.POSITIVE_INFINITY;
    } else {
      error = Math.abs(a - e);
      if (error > maxAbsoluteError) maxAbsoluteError = error;
      within = error <= tolerance.absolute + tolerance.relative * Math.abs(e);
    }
    if (!within) {
      outside++;
      if (error > worstError) {
        worstError = error;
        worst = i;
      }
    }
  }
  return { ok: outside === 0, maxAbsoluteError, outside, worst, worstError: worst < 0 ? 0 : worstError };
}
