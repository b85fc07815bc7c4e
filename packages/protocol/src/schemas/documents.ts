/**
 * The signed documents: model manifest, desired state, key set. Each payload names its own type,
 * so a signature over one kind of document can never be replayed as another.
 */
import Type, { type Static, type TSchema } from 'typebox';
import {
  DeviceId,
  ExecutionProviderSchema,
  Identifier,
  KeyId,
  ModelName,
  Semver,
  Sha256,
  Strict,
  TensorData,
  TensorName,
  TensorSpec,
  Timestamp,
} from './common.ts';

export const DOCUMENT_TYPES = {
  manifest: 'edgefleet.manifest/v1',
  desiredState: 'edgefleet.desired-state/v1',
  keySet: 'edgefleet.keyset/v1',
  goldenVectors: 'edgefleet.golden-vectors/v1',
} as const;

export const Signature = Strict(
  {
    keyId: KeyId,
    sig: Type.String({ pattern: '^[A-Za-z0-9_-]{86}$', description: 'a 64-byte ed25519 signature as 86 base64url characters' }),
  },
  { description: 'a signature and the id of the key that made it' },
);
export type Signature = Static<typeof Signature>;

/** The envelope: the payload as a JSON object (signatures cover its RFC 8785 canonical form). */
export function SignedSchema<T extends TSchema>(payload: T, title: string) {
  return Strict(
    {
      payload,
      signatures: Type.Array(Signature, { maxItems: 8, description: 'at most 8 signatures' }),
    },
    { title, description: `a signed ${title}` },
  );
}

export const FileName = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$',
  description: 'a file name of 1-128 characters from A-Z a-z 0-9 . _ - starting with a letter or digit',
});

export const FILE_ROLES = ['labels', 'config', 'golden-vectors', 'reference-profile', 'tokenizer', 'other'] as const;

/** An extra file shipped with the model. Listing every file's hash in one signed manifest defeats mix-and-match. */
export const ManifestFile = Strict(
  {
    name: FileName,
    role: Type.Enum(FILE_ROLES, { description: `one of ${FILE_ROLES.join(', ')}` }),
    sha256: Sha256,
    size: Type.Integer({ minimum: 0, maximum: 2 ** 40, description: 'a size in bytes up to 1 TiB' }),
    mediaType: Type.String({
      pattern: '^[a-z0-9.+-]+/[a-z0-9.+-]+$',
      maxLength: 128,
      description: 'a media type such as application/json',
    }),
  },
  { description: 'a file of the model: name, role, sha256, size, media type' },
);
export type ManifestFile = Static<typeof ManifestFile>;

export const QUANTIZATION_FORMATS = ['qdq', 'qlinear', 'integer-ops', 'dynamic', 'float16'] as const;

export const GoldenVector = Strict(
  {
    inputs: Type.Array(TensorData, { minItems: 1, maxItems: 64, description: '1-64 input tensors' }),
    outputs: Type.Array(TensorData, { minItems: 1, maxItems: 64, description: '1-64 expected output tensors' }),
  },
  { description: 'golden input tensors and the outputs they must produce' },
);
export type GoldenVector = Static<typeof GoldenVector>;

/**
 * The golden vectors file: what a manifest's `acceptance.vectorsFile` names. It travels as a file
 * of role golden-vectors, downloaded and hash-checked like the model, so a realistic sample input
 * (an image of hundreds of kilobytes) never enters a manifest or a desired-state document.
 */
export const GoldenVectorsFile = Strict(
  {
    type: Type.Literal(DOCUMENT_TYPES.goldenVectors, { description: `"${DOCUMENT_TYPES.goldenVectors}"` }),
    vectors: Type.Array(GoldenVector, { minItems: 1, maxItems: 64, description: '1-64 golden vectors' }),
  },
  { title: 'golden vectors file', description: 'the golden vectors of an acceptance test' },
);
export type GoldenVectorsFile = Static<typeof GoldenVectorsFile>;

export const Tolerance = Strict(
  {
    absolute: Type.Number({ minimum: 0, maximum: 1e9, description: 'a non-negative absolute tolerance' }),
    relative: Type.Number({ minimum: 0, maximum: 1e9, description: 'a non-negative relative tolerance' }),
  },
  { description: 'how far an output may be from the golden one: |actual - expected| <= absolute + relative * |expected|' },
);
export type Tolerance = Static<typeof Tolerance>;

export const FEATURE_KINDS = ['column', 'summary', 'class', 'top'] as const;
export const FEATURE_STATS = ['mean', 'std', 'energy'] as const;

/** A feature name: what reference datasets call their columns and drift reports name. */
export const FeatureName = Type.String({
  pattern: '^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$',
  description: 'a feature name of 1-128 characters from A-Z a-z 0-9 _ . : / -',
});

/**
 * One telemetry feature: how each run turns into values of a named feature.
 * - column: tabular data, the value at `index` of the last dimension, one per row (numeric, or
 *   categorical when `type` says so: the value, or `labels[value]`);
 * - summary: one value per run, `stat` (mean, std or energy, the mean of squares) of the tensor;
 * - class: outputs, the argmax of the last dimension per row (`labels[argmax]` when given);
 * - top: outputs, the largest score of the last dimension per row.
 */
export const TelemetryFeature = Strict(
  {
    name: FeatureName,
    source: Type.Enum(['input', 'output'] as const, { description: '"input" or "output"' }),
    tensor: TensorName,
    kind: Type.Enum(FEATURE_KINDS, { description: `one of ${FEATURE_KINDS.join(', ')}` }),
    index: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 24, description: 'column: the position in the last dimension' })),
    stat: Type.Optional(Type.Enum(FEATURE_STATS, { description: `summary: one of ${FEATURE_STATS.join(', ')}` })),
    type: Type.Optional(Type.Enum(['numeric', 'categorical'] as const, { description: 'column: "numeric" (default) or "categorical"' })),
    labels: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 1024, description: 'class or categorical codes as names' }),
    ),
  },
  { description: 'a telemetry feature: its name, the tensor it reads and how' },
);
export type TelemetryFeature = Static<typeof TelemetryFeature>;

export const TelemetrySpec = Strict(
  {
    features: Type.Array(TelemetryFeature, { maxItems: 128, description: 'at most 128 features' }),
    defaults: Type.Optional(Type.Boolean({ description: 'also record the default summaries of tensors no feature reads (default false)' })),
  },
  { description: 'what the devices profile from each run: named features of inputs and outputs' },
);
export type TelemetrySpec = Static<typeof TelemetrySpec>;

export const VARIANT_PRECISIONS = ['float32', 'float16', 'int8', 'uint8', 'mixed'] as const;
/** The name a device reports when the manifest's own artifact (the reference) serves. */
export const REFERENCE_VARIANT = 'reference';

export const VariantName = Type.String({
  pattern: '^(?!reference$)[a-z0-9][a-z0-9._-]{0,31}$',
  description: 'a variant name of 1-32 characters from a-z 0-9 . _ - (not "reference": that is the main artifact)',
});

/**
 * Another artifact of the same model (same inputs and outputs): a float16 or int8 build, say, for
 * the devices that run it better. A device picks the best variant it can run, checks it against
 * the golden outputs of the reference (the manifest's artifact) within the variant's tolerance (its
 * quantization error budget), and falls back to the next one, the reference last, when it fails.
 */
export const ManifestVariant = Strict(
  {
    name: VariantName,
    sha256: Sha256,
    size: Type.Integer({ minimum: 1, maximum: 2 ** 40, description: 'the variant size in bytes (1 byte to 1 TiB)' }),
    mediaType: Type.Literal('application/x-onnx', { description: '"application/x-onnx"' }),
    precision: Type.Enum(VARIANT_PRECISIONS, { description: `one of ${VARIANT_PRECISIONS.join(', ')}` }),
    executionProviders: Type.Array(ExecutionProviderSchema, {
      minItems: 1,
      maxItems: 3,
      uniqueItems: true,
      description: 'the execution providers this variant is built for',
    }),
    tolerance: Tolerance,
  },
  { description: 'a variant of the model: its file, precision, target execution providers and tolerance against the reference outputs' },
);
export type ManifestVariant = Static<typeof ManifestVariant>;

export const ManifestPayload = Strict(
  {
    type: Type.Literal(DOCUMENT_TYPES.manifest, { description: `"${DOCUMENT_TYPES.manifest}"` }),
    name: ModelName,
    version: Semver,
    issuedAt: Timestamp,
    expiresAt: Timestamp,
    artifact: Strict(
      {
        sha256: Sha256,
        size: Type.Integer({ minimum: 1, maximum: 2 ** 40, description: 'the model size in bytes (1 byte to 1 TiB)' }),
        mediaType: Type.Literal('application/x-onnx', { description: '"application/x-onnx"' }),
      },
      { description: 'the model file: sha256, size and media type' },
    ),
    files: Type.Array(ManifestFile, { maxItems: 32, description: 'at most 32 extra files' }),
    variants: Type.Optional(
      Type.Array(ManifestVariant, {
        maxItems: 8,
        description: 'at most 8 variants of the model, most preferred first; the artifact is the reference and the last fallback',
      }),
    ),
    model: Strict(
      {
        format: Type.Literal('onnx', { description: '"onnx"' }),
        irVersion: Type.Integer({ minimum: 1, maximum: 1000, description: 'the ONNX IR version' }),
        opsets: Type.Array(
          Strict({
            domain: Type.String({ maxLength: 128, description: 'an operator set domain ("" for the default ai.onnx)' }),
            version: Type.Integer({ minimum: 1, maximum: 10000, description: 'an operator set version' }),
          }),
          { minItems: 1, maxItems: 32, description: '1-32 operator sets' },
        ),
        inputs: Type.Array(TensorSpec, { minItems: 1, maxItems: 256, description: '1-256 inputs' }),
        outputs: Type.Array(TensorSpec, { minItems: 1, maxItems: 256, description: '1-256 outputs' }),
        operators: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
          maxItems: 1024,
          description: 'at most 1024 operator names',
        }),
        quantization: Strict(
          {
            quantized: Type.Boolean({ description: 'true when the model uses quantized (integer) arithmetic' }),
            formats: Type.Array(Type.Enum(QUANTIZATION_FORMATS, { description: `one of ${QUANTIZATION_FORMATS.join(', ')}` }), {
              maxItems: QUANTIZATION_FORMATS.length,
            }),
          },
          { description: 'whether and how the model is quantized' },
        ),
      },
      { description: 'what the ONNX file declares: IR version, opsets, inputs, outputs, operators, quantization' },
    ),
    runtime: Strict(
      {
        executionProviders: Type.Array(ExecutionProviderSchema, {
          minItems: 1,
          maxItems: 3,
          uniqueItems: true,
          description: 'the execution providers the model may run on (the device tries them in its own order of preference)',
        }),
        deviceClasses: Type.Optional(
          Type.Array(Identifier, { minItems: 1, maxItems: 64, description: 'the device classes the model is built for' }),
        ),
        minRuntimeVersion: Type.Optional(Semver),
      },
      { description: 'what a device needs to run the model' },
    ),
    acceptance: Type.Optional(
      Strict(
        {
          tolerance: Tolerance,
          vectors: Type.Array(GoldenVector, { maxItems: 16, description: 'at most 16 golden vectors inline' }),
          vectorsFile: Type.Optional(FileName),
        },
        { description: 'the on-device acceptance test: golden vectors (inline, or in a file of role golden-vectors) and a tolerance' },
      ),
    ),
    telemetry: Type.Optional(TelemetrySpec),
    metadata: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-z0-9._-]{0,63}$' }), Type.String({ maxLength: 1024 }), {
        maxProperties: 64,
        description: 'at most 64 string labels with keys from a-z 0-9 . _ -',
      }),
    ),
  },
  { title: 'model manifest', description: 'a model manifest' },
);
export type ManifestPayload = Static<typeof ManifestPayload>;
export const SignedManifest = SignedSchema(ManifestPayload, 'model manifest');
export type SignedManifest = Static<typeof SignedManifest>;

export const DesiredShadow = Strict(
  {
    manifest: SignedManifest,
    rate: Type.Number({ minimum: 0, maximum: 1, description: 'the share of live inputs the candidate also runs on (0-1)' }),
  },
  { description: 'a candidate version to run in shadow beside the active one: it never answers' },
);
export type DesiredShadow = Static<typeof DesiredShadow>;

export const DesiredModel = Strict(
  {
    manifest: SignedManifest,
    rolloutId: Type.Optional(Identifier),
    /** A rollout's shadow stage: the candidate runs beside this version on a share of its inputs. */
    shadow: Type.Optional(DesiredShadow),
  },
  { description: 'a model version the device should run, as its signed manifest' },
);

export const DesiredStatePayload = Strict(
  {
    type: Type.Literal(DOCUMENT_TYPES.desiredState, { description: `"${DOCUMENT_TYPES.desiredState}"` }),
    deviceId: DeviceId,
    sequence: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'a sequence number above every earlier one for this device',
    }),
    issuedAt: Timestamp,
    expiresAt: Timestamp,
    rollback: Type.Boolean({ description: 'true when the document may install versions older than those running' }),
    models: Type.Array(DesiredModel, { maxItems: 32, description: 'at most 32 models, each named once' }),
    remove: Type.Array(ModelName, { maxItems: 32, description: 'at most 32 model names to uninstall' }),
  },
  { title: 'desired-state document', description: 'a desired-state document' },
);
export type DesiredStatePayload = Static<typeof DesiredStatePayload>;
export const SignedDesiredState = SignedSchema(DesiredStatePayload, 'desired-state document');
export type SignedDesiredState = Static<typeof SignedDesiredState>;

export const KEY_ROLES = ['root', 'manifest', 'desired-state'] as const;
export type KeyRole = (typeof KEY_ROLES)[number];

const RolePolicy = Strict(
  {
    keyIds: Type.Array(KeyId, { minItems: 1, maxItems: 32, uniqueItems: true, description: '1-32 distinct key ids' }),
    threshold: Type.Integer({ minimum: 1, maximum: 32, description: 'how many distinct keys must sign (1-32)' }),
  },
  { description: 'the keys trusted for a role and how many of them must sign' },
);

export const PublicKeyEntry = Strict(
  {
    keyId: KeyId,
    algorithm: Type.Literal('ed25519', { description: '"ed25519"' }),
    publicKey: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'a 32-byte ed25519 public key as 43 base64url characters' }),
  },
  { description: 'a public key with its id' },
);
export type PublicKeyEntry = Static<typeof PublicKeyEntry>;

/**
 * The keys a device trusts, by role. Root keys sign key sets (rotation); manifest keys sign model
 * manifests; desired-state keys sign per-device documents. Modelled on TUF's root metadata.
 */
export const KeySetPayload = Strict(
  {
    type: Type.Literal(DOCUMENT_TYPES.keySet, { description: `"${DOCUMENT_TYPES.keySet}"` }),
    version: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'a version above the key set it replaces' }),
    issuedAt: Timestamp,
    expiresAt: Timestamp,
    keys: Type.Array(PublicKeyEntry, { minItems: 1, maxItems: 32, description: '1-32 public keys' }),
    roles: Strict(
      { root: RolePolicy, manifest: RolePolicy, 'desired-state': RolePolicy },
      { description: 'the policy of each role: root, manifest, desired-state' },
    ),
  },
  { title: 'key set', description: 'a key set' },
);
export type KeySetPayload = Static<typeof KeySetPayload>;
export const SignedKeySet = SignedSchema(KeySetPayload, 'key set');
export type SignedKeySet = Static<typeof SignedKeySet>;

export interface SignedDocument<P> {
  payload: P;
  signatures: Signature[];
}
