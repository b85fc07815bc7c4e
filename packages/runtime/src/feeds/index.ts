/**
 * Checks inputs against what the model declares before onnxruntime sees them, so a wrong feed is
 * an EF_INPUT_INVALID that names the input and the problem instead of an engine crash message.
 */
import { type Dtype, EdgefleetError, elementCount, findSharedDimensionMismatch, shapeFits, type TensorSpec } from '@edgefleet/protocol';
import type { Feeds, RuntimeTensor } from '../engine/types.ts';

/** The typed array each dtype must arrive in (float16 as raw 16-bit words, bool as bytes). */
const ARRAY_FOR_DTYPE: Readonly<Record<Exclude<Dtype, 'string'>, string>> = {
  float32: 'Float32Array',
  float16: 'Uint16Array',
  float64: 'Float64Array',
  int8: 'Int8Array',
  uint8: 'Uint8Array',
  int16: 'Int16Array',
  uint16: 'Uint16Array',
  int32: 'Int32Array',
  uint32: 'Uint32Array',
  int64: 'BigInt64Array',
  uint64: 'BigUint64Array',
  bool: 'Uint8Array',
};

/** Accepts our plain tensors and onnxruntime Tensor objects (`type`/`dims`) alike. */
export function normalizeFeeds(feeds: unknown): Feeds {
  if (feeds === null || typeof feeds !== 'object' || Array.isArray(feeds)) {
    throw invalid('feeds must be an object mapping input names to tensors');
  }
  const out: Record<string, RuntimeTensor> = {};
  for (const [name, value] of Object.entries(feeds)) {
    const tensor = value as { dtype?: unknown; type?: unknown; shape?: unknown; dims?: unknown; data?: unknown } | null;
    if (tensor === null || typeof tensor !== 'object') throw invalid(`input "${name}" is not a tensor ({ dtype, shape, data })`, name);
    const dtype = tensor.dtype ?? tensor.type;
    const shape = tensor.shape ?? tensor.dims;
    if (typeof dtype !== 'string') throw invalid(`input "${name}" has no dtype`, name);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw invalid(`input "${name}" has no valid shape (a list of non-negative integers)`, name);
    }
    out[name] = { dtype: dtype as Dtype, shape, data: tensor.data as RuntimeTensor['data'] };
  }
  return out;
}

// Declared inputs by name, built once per manifest (run is a hot path).
const declaredInputs = new WeakMap<readonly TensorSpec[], Map<string, TensorSpec>>();

/** Throws EF_INPUT_INVALID unless `feeds` gives each declared input once with a fitting dtype, shape and data. */
export function checkFeeds(feeds: Feeds, inputs: readonly TensorSpec[], model: string): void {
  let declared = declaredInputs.get(inputs);
  if (!declared) {
    declared = new Map(inputs.map((spec) => [spec.name, spec]));
    declaredInputs.set(inputs, declared);
  }
  for (const name in feeds) {
    if (!declared.has(name)) {
      throw invalid(`${model} has no input "${name}"; its inputs are ${[...declared.keys()].join(', ')}`, name);
    }
  }
  for (const spec of inputs) {
    const tensor = feeds[spec.name];
    if (!tensor) throw invalid(`${model} needs input "${spec.name}" (${spec.dtype} [${spec.shape.join(', ')}])`, spec.name);
    if (tensor.dtype !== spec.dtype) {
      throw invalid(`${model} input "${spec.name}" must be ${spec.dtype}, got ${tensor.dtype}`, spec.name);
    }
    if (!shapeFits(spec.shape, tensor.shape)) {
      throw invalid(
        `${model} input "${spec.name}" must have shape [${spec.shape.join(', ')}]${spec.shape.length === 0 ? ' (one element)' : ''}, got [${tensor.shape.join(', ')}]`,
        spec.name,
      );
    }
    const count = elementCount(tensor.shape);
    if (spec.dtype === 'string') {
      if (!Array.isArray(tensor.data) || tensor.data.length !== count || !tensor.data.every((s) => typeof s === 'string')) {
        throw invalid(`${model} input "${spec.name}" must hold ${count} strings`, spec.name);
      }
      continue;
    }
    const expected = ARRAY_FOR_DTYPE[spec.dtype];
    const actual = (tensor.data as { constructor?: { name?: string } } | undefined)?.constructor?.name;
    if (actual !== expected)
      throw invalid(`${model} input "${spec.name}" data must be a ${expected}, got ${actual ?? typeof tensor.data}`, spec.name);
    if ((tensor.data as ArrayLike<unknown>).length !== count) {
      throw invalid(
        `${model} input "${spec.name}" has ${(tensor.data as ArrayLike<unknown>).length} elements, shape [${tensor.shape.join(', ')}] needs ${count}`,
        spec.name,
      );
    }
  }
  checkSharedDimensions(feeds, inputs, model);
}

/** Inputs of a manifest that name a symbolic dimension, built once per manifest (none: nothing to check per run). */
const sharingInputs = new WeakMap<readonly TensorSpec[], readonly TensorSpec[]>();

/** Throws EF_INPUT_INVALID when a symbolic dimension shared by several inputs has different sizes in the feeds. */
function checkSharedDimensions(feeds: Feeds, inputs: readonly TensorSpec[], model: string): void {
  let named = sharingInputs.get(inputs);
  if (!named) {
    const counts = new Map<string, number>();
    for (const spec of inputs) {
      for (const dim of new Set(spec.shape)) if (typeof dim === 'string' && dim !== '?') counts.set(dim, (counts.get(dim) ?? 0) + 1);
    }
    named = inputs.filter((spec) => spec.shape.some((dim) => typeof dim === 'string' && (counts.get(dim) ?? 0) > 1));
    sharingInputs.set(inputs, named);
  }
  if (named.length === 0) return;
  const mismatch = findSharedDimensionMismatch(
    named.map((spec) => ({ spec, shape: (feeds[spec.name] as RuntimeTensor).shape, kind: 'input' })),
  );
  if (mismatch) throw invalid(`${model}: ${mismatch}; inputs that share a dimension name must agree on its size`);
}

function invalid(message: string, input?: string): EdgefleetError {
  return new EdgefleetError('EF_INPUT_INVALID', message, { details: input === undefined ? {} : { input } });
}
