/**
 * Building blocks shared by every message. Each carries a `description` phrased as what is
 * expected: validation errors quote it ("/version: expected a semantic version such as 1.4.0").
 * The schemas are plain JSON Schema (TypeBox), so fastify routes can use them as they are.
 */
import Type, { type Static, type TSchema } from 'typebox';
import { DEVICE_ID_PATTERN, MODEL_NAME_PATTERN } from '../ids/index.ts';
import { SEMVER_MAX_LENGTH, SEMVER_PATTERN } from '../semver/index.ts';

/** Every object refuses unknown members: a typo or an injected `__proto__` is an error, not ignored. */
export function Strict<T extends Record<string, TSchema>>(properties: T, options: { title?: string; description?: string } = {}) {
  return Type.Object(properties, { additionalProperties: false, ...options });
}

export const DeviceId = Type.String({
  pattern: DEVICE_ID_PATTERN,
  description: 'a device id of 1-64 characters from A-Z a-z 0-9 . _ : - starting with a letter or digit',
});

export const ModelName = Type.String({
  pattern: MODEL_NAME_PATTERN,
  description: 'a model name of 1-64 characters from a-z 0-9 . _ - starting with a letter or digit',
});

/** A device tag: what rollouts select and drift groups by (`region=eu`, `line-3`). */
export const TAG_PATTERN = '^[a-z0-9][a-z0-9._:=-]{0,63}$';
export const Tag = Type.String({
  pattern: TAG_PATTERN,
  description: 'a tag of 1-64 characters from a-z 0-9 . _ : = - starting with a letter or digit, such as region=eu or line-3',
});

export const Semver = Type.String({
  pattern: SEMVER_PATTERN,
  maxLength: SEMVER_MAX_LENGTH,
  description: 'a semantic version such as 1.4.0 or 2.0.0-rc.1',
});

/** RFC 3339 in UTC with a Z suffix: one spelling per instant, comparable as text and by Date.parse. */
export const Timestamp = Type.String({
  pattern: '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,3})?Z$',
  description: 'an RFC 3339 UTC timestamp such as 2026-11-25T19:50:00Z',
});

export const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'a sha256 digest as 64 lower-case hex characters' });

export const KeyId = Type.String({
  pattern: '^[0-9a-f]{64}$',
  description: 'a key id: the sha256 of the raw public key as 64 lower-case hex characters',
});

/** Opaque identifiers minted by the server (rollouts, commands, requests). */
export const Identifier = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$',
  description: 'an identifier of 1-128 characters from A-Z a-z 0-9 . _ : -',
});

/** Changes on every process start of a device, so sequence numbers may restart at 0 safely. */
export const BootId = Type.String({
  pattern: '^[A-Za-z0-9-]{8,64}$',
  description: 'a boot id of 8-64 characters from A-Z a-z 0-9 - (a UUID fits)',
});

export const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'a non-negative integer' });

export const ErrorInfo = Strict(
  {
    code: Type.String({ pattern: '^EF_[A-Z0-9_]{1,60}$', description: 'an edgefleet error code such as EF_SIGNATURE_INVALID' }),
    message: Type.String({ maxLength: 2000, description: 'a message of at most 2000 characters' }),
  },
  { description: 'an error with its code and message' },
);

/** The execution providers a model can run on: onnxruntime-web's WebGPU and WASM, onnxruntime-node's CPU. */
export const EXECUTION_PROVIDERS = ['webgpu', 'wasm', 'cpu'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];
export const ExecutionProviderSchema = Type.Enum(EXECUTION_PROVIDERS, { description: `one of ${EXECUTION_PROVIDERS.join(', ')}` });

/** ONNX tensor element types that onnxruntime-web can feed and fetch. */
export const DTYPES = [
  'float32',
  'float16',
  'float64',
  'int8',
  'uint8',
  'int16',
  'uint16',
  'int32',
  'uint32',
  'int64',
  'uint64',
  'bool',
  'string',
] as const;
export type Dtype = (typeof DTYPES)[number];
export const DtypeSchema = Type.Enum(DTYPES, { description: `one of ${DTYPES.join(', ')}` });

/** Numeric and boolean dtypes: the ones golden vectors can carry as raw little-endian bytes. */
export const BINARY_DTYPES = [
  'float32',
  'float16',
  'float64',
  'int8',
  'uint8',
  'int16',
  'uint16',
  'int32',
  'uint32',
  'int64',
  'uint64',
  'bool',
] as const;
export type BinaryDtype = (typeof BINARY_DTYPES)[number];
export const BinaryDtypeSchema = Type.Enum(BINARY_DTYPES, { description: `one of ${BINARY_DTYPES.join(', ')}` });

export const TensorName = Type.String({ minLength: 1, maxLength: 256, description: 'a tensor name of 1-256 characters' });

/** One dimension: a fixed size, or a symbolic name for a dynamic one ("batch"; "?" when unnamed). */
export const Dimension = Type.Union(
  [Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 }), Type.String({ pattern: '^(\\?|[A-Za-z_][A-Za-z0-9_.:-]{0,63})$' })],
  { description: 'a dimension: a size from 0 to 2^31-1, or a symbolic name for a dynamic size ("?" when unnamed)' },
);
export type Dimension = Static<typeof Dimension>;

export const TensorSpec = Strict(
  {
    name: TensorName,
    dtype: DtypeSchema,
    shape: Type.Array(Dimension, { maxItems: 16, description: 'at most 16 dimensions ([] for a scalar)' }),
  },
  { description: 'a tensor description: name, dtype and shape' },
);
export type TensorSpec = Static<typeof TensorSpec>;

/** Raw tensor data: little-endian element bytes, base64url encoded. Bool is one byte per element. */
export const TensorData = Strict(
  {
    name: TensorName,
    dtype: BinaryDtypeSchema,
    shape: Type.Array(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 }), { maxItems: 16, description: 'at most 16 fixed dimensions' }),
    data: Type.String({ pattern: '^[A-Za-z0-9_-]*$', maxLength: 4 * 1024 * 1024, description: 'little-endian element bytes as base64url' }),
  },
  { description: 'a tensor with its data' },
);
export type TensorData = Static<typeof TensorData>;

export const ModelRef = Strict({ name: ModelName, version: Semver }, { description: 'a model name and version' });
export type ModelRef = Static<typeof ModelRef>;
