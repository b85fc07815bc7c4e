/**
 * The MQTT messages besides the signed desired state: what devices report and what the server
 * answers. Every message names its type and its device, so a message can be checked against the
 * topic it arrived on (a device id in the payload that is not the topic's is refused).
 */
import Type, { type Static } from 'typebox';
import {
  BootId,
  Count,
  DeviceId,
  ErrorInfo,
  ExecutionProviderSchema,
  Identifier,
  ModelName,
  ModelRef,
  Semver,
  Sha256,
  Strict,
  Timestamp,
} from './common.ts';

export const MESSAGE_TYPES = {
  reported: 'edgefleet.reported-state/v1',
  presence: 'edgefleet.presence/v1',
  event: 'edgefleet.event/v1',
  telemetry: 'edgefleet.telemetry/v1',
  telemetryAck: 'edgefleet.telemetry-ack/v1',
  command: 'edgefleet.command/v1',
  artifactRequest: 'edgefleet.artifact-request/v1',
  artifactChunk: 'edgefleet.artifact-chunk/v1',
} as const;

function TypeTag<T extends string>(value: T) {
  return Type.Literal(value, { description: `"${value}"` });
}

function OneOf<const T extends readonly string[]>(values: T, what: string) {
  return Type.Enum(values, { description: `${what}: one of ${values.join(', ')}` });
}

export const MODEL_STATES = ['active', 'installing', 'failed', 'removed'] as const;

/**
 * How the device chose the execution provider a version serves on: each provider the manifest
 * allows, whether it passed the acceptance test, and its measured p50 latency on the golden inputs
 * (the fastest that passed serves, with a margin in favour of the device's preferred one).
 */
export const ProviderMeasurement = Strict(
  {
    executionProvider: ExecutionProviderSchema,
    engine: Type.String({ minLength: 1, maxLength: 100, description: 'the engine offering it (onnxruntime-web, onnxruntime-node)' }),
    passed: Type.Boolean({ description: 'loaded and passed the acceptance test' }),
    p50Ms: Type.Optional(Type.Number({ minimum: 0, maximum: 3_600_000, description: 'median latency on the golden inputs, in ms' })),
    /** A software adapter (WebGPU's isFallbackAdapter: SwiftShader): never preferred unmeasured. */
    fallbackAdapter: Type.Optional(Type.Boolean()),
    reason: Type.Optional(Type.String({ maxLength: 300, description: 'why it did not pass, or does not serve' })),
  },
  { description: 'an execution provider as the device measured it at install' },
);
export type ProviderMeasurement = Static<typeof ProviderMeasurement>;
/** One per engine and execution provider the manifest allows (reasons at most 300 characters): an event stays small. */
export const ProviderMeasurements = Type.Array(ProviderMeasurement, { maxItems: 6 });

/** Which artifact of a version serves: a variant's name, or "reference" for the manifest's own artifact. */
export const ServedVariant = Type.String({
  pattern: '^[a-z0-9][a-z0-9._-]{0,31}$',
  description: 'the variant that serves ("reference": the manifest\'s own artifact)',
});

export const ReportedModel = Strict(
  {
    name: ModelName,
    state: OneOf(MODEL_STATES, 'the model state'),
    active: Type.Optional(
      Strict({
        version: Semver,
        sha256: Sha256,
        executionProvider: ExecutionProviderSchema,
        /** Absent from devices older than variants, and then it is the reference. */
        variant: Type.Optional(ServedVariant),
        activatedAt: Timestamp,
        /** How the provider was chosen at install. */
        providers: Type.Optional(ProviderMeasurements),
      }),
    ),
    previous: Type.Optional(Strict({ version: Semver, sha256: Sha256 })),
    /** A candidate running in shadow beside the active version (a rollout's shadow stage). */
    shadow: Type.Optional(
      Strict({
        version: Semver,
        variant: Type.Optional(ServedVariant),
        executionProvider: ExecutionProviderSchema,
        rate: Type.Number({ minimum: 0, maximum: 1 }),
      }),
    ),
    /** The version floor: nothing older is accepted without a signed rollback. */
    floor: Type.Optional(Semver),
    lastError: Type.Optional(ErrorInfo),
  },
  { description: 'one model on the device: its state, active and previous versions' },
);
export type ReportedModel = Static<typeof ReportedModel>;

export const ReportedState = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.reported),
    deviceId: DeviceId,
    bootId: BootId,
    reportedAt: Timestamp,
    appliedSequence: Count,
    agent: Strict({
      version: Semver,
      platform: OneOf(['node', 'browser'] as const, 'the platform'),
      deviceClass: Type.Optional(Identifier),
    }),
    capabilities: Strict({
      executionProviders: Type.Array(ExecutionProviderSchema, { maxItems: 3, uniqueItems: true }),
      memoryMb: Type.Optional(Count),
      storageFreeBytes: Type.Optional(Count),
    }),
    models: Type.Array(ReportedModel, { maxItems: 64, description: 'at most 64 models' }),
  },
  { title: 'reported state', description: 'a reported state' },
);
export type ReportedState = Static<typeof ReportedState>;

export const Presence = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.presence),
    deviceId: DeviceId,
    bootId: BootId,
    state: OneOf(['online', 'offline'] as const, 'the presence'),
    /** For the will message this is when the connection was opened, the last moment the device knew. */
    since: Timestamp,
  },
  { title: 'presence', description: 'a presence message' },
);
export type Presence = Static<typeof Presence>;

export const EVENT_KINDS = [
  'desired-state-received',
  'desired-state-rejected',
  'download-started',
  'download-progress',
  'download-complete',
  'verified',
  'acceptance-passed',
  'acceptance-failed',
  'execution-provider-fallback',
  'activated',
  'install-failed',
  'rolled-back',
  'removed',
  'runtime-error',
  /** A candidate installed, failed to install, or ended in shadow (a rollout's shadow stage). */
  'shadow-installed',
  'shadow-failed',
  'shadow-removed',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

export const DeviceEvent = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.event),
    deviceId: DeviceId,
    bootId: BootId,
    /** Per boot, increasing: with bootId it identifies the event for deduplication. */
    seq: Count,
    at: Timestamp,
    kind: OneOf(EVENT_KINDS, 'the event kind'),
    model: Type.Optional(ModelRef),
    rolloutId: Type.Optional(Identifier),
    desiredSequence: Type.Optional(Count),
    progress: Type.Optional(Strict({ bytes: Count, total: Count })),
    executionProvider: Type.Optional(ExecutionProviderSchema),
    /** With `activated` and the acceptance events: the variant concerned. */
    variant: Type.Optional(ServedVariant),
    fallback: Type.Optional(
      Strict({
        from: ExecutionProviderSchema,
        to: ExecutionProviderSchema,
        reason: Type.String({ maxLength: 2000 }),
      }),
    ),
    error: Type.Optional(ErrorInfo),
    /** With `activated`: how the execution provider was chosen (measured on the device). */
    providers: Type.Optional(ProviderMeasurements),
    /** With `activated`: the install-time probe of the new version against the one it replaced. */
    latency: Type.Optional(
      Strict({
        p95Ms: Type.Number({ minimum: 0, maximum: 3_600_000 }),
        previousP95Ms: Type.Optional(Type.Number({ minimum: 0, maximum: 3_600_000 })),
        ratio: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000 })),
        runs: Count,
      }),
    ),
  },
  { title: 'device event', description: 'a device event' },
);
export type DeviceEvent = Static<typeof DeviceEvent>;

/**
 * One feature's profile over a window, as `@edgefleet/drift` writes it (`toWire`): numeric
 * (moments, a KLL quantile sketch as float32 base64 levels, an optional histogram) or categorical
 * (bounded counts per category). This schema bounds the shape; the drift package's `fromWire`
 * checks the meaning (weights against counts, min ≤ max, finite items).
 */
export const NumericProfileWire = Strict(
  {
    t: Type.Literal('n'),
    /** count, missing, nan, posInf, negInf, min, max, mean, m2 (min/max null while count is 0). */
    m: Type.Array(Type.Union([Type.Number(), Type.Null()]), { minItems: 9, maxItems: 9 }),
    k: Type.Integer({ minimum: 8, maximum: 65535 }),
    n: Count,
    s: Type.Integer({ minimum: 0, maximum: 4294967295 }),
    l: Type.Array(Type.String({ maxLength: 262144, pattern: '^[A-Za-z0-9+/]*={0,2}$' }), { minItems: 1, maxItems: 64 }),
    h: Type.Optional(
      Strict({
        e: Type.Array(Type.Number(), { maxItems: 1000 }),
        c: Type.Array(Count, { maxItems: 1001 }),
      }),
    ),
  },
  { description: 'a numeric feature profile' },
);

export const CategoricalProfileWire = Strict(
  {
    t: Type.Literal('c'),
    x: Count,
    lim: Type.Integer({ minimum: 1, maximum: 4096 }),
    c: Type.Record(Type.String({ maxLength: 256 }), Count, { maxProperties: 4097 }),
  },
  { description: 'a categorical feature profile' },
);

export const FeatureProfileWire = Type.Union([NumericProfileWire, CategoricalProfileWire], { description: 'a feature profile' });

/**
 * A shadow candidate beside the active version over one window: the sampled live inputs it also
 * ran, how its answers compared (class agreement, top-k overlap, score differences) and its
 * latency over the active version's on the same input.
 */
export const ShadowSummary = Strict(
  {
    version: Semver,
    /** Inputs the candidate ran and was compared on. */
    runs: Count,
    /** Inputs sampled for it but not run: the device was busy, or the shadow over its time budget. */
    skipped: Count,
    /** Inputs it failed on. */
    errors: Count,
    /** Rows of class scores compared, and those where both picked the same class. */
    rows: Count,
    agreed: Count,
    /** Sum over rows of the top-3 overlap (each 0-1). */
    overlap: Type.Number({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    /** Numeric output elements compared, their largest and summed absolute difference. */
    elements: Count,
    maxAbsDiff: Type.Number({ minimum: 0, maximum: Number.MAX_VALUE }),
    absDiffSum: Type.Number({ minimum: 0, maximum: Number.MAX_VALUE }),
    /** The candidate's latency over the active version's, per compared input. */
    latencyRatio: NumericProfileWire,
  },
  { description: 'a shadow candidate compared with the active version over a window' },
);
export type ShadowSummary = Static<typeof ShadowSummary>;

export const TelemetryWindow = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.telemetry),
    deviceId: DeviceId,
    bootId: BootId,
    /** Per boot, increasing: (deviceId, bootId, seq) identifies a window exactly once. */
    seq: Count,
    windowStart: Timestamp,
    windowEnd: Timestamp,
    model: ModelRef,
    executionProvider: ExecutionProviderSchema,
    runs: Count,
    errors: Type.Array(Strict({ code: ErrorInfo.properties.code, count: Count }), { maxItems: 64 }),
    latencyMs: NumericProfileWire,
    /** Input summaries (`<input>.mean`, `.std`, `.energy`), output classes (`<output>.class`, `.top`)… */
    features: Type.Array(Strict({ name: Type.String({ minLength: 1, maxLength: 128 }), profile: FeatureProfileWire }), { maxItems: 512 }),
    /** Windows dropped on the device since the last delivered one (queue overflow). */
    dropped: Count,
    /** A candidate running in shadow beside this version (a rollout's shadow stage). */
    shadow: Type.Optional(ShadowSummary),
  },
  { title: 'telemetry window', description: 'a telemetry window' },
);
export type TelemetryWindow = Static<typeof TelemetryWindow>;

export const TelemetryAck = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.telemetryAck),
    deviceId: DeviceId,
    bootId: BootId,
    seqs: Type.Array(Count, { minItems: 1, maxItems: 1024 }),
  },
  { title: 'telemetry acknowledgement', description: 'a telemetry acknowledgement' },
);
export type TelemetryAck = Static<typeof TelemetryAck>;

export const COMMANDS = ['report-state', 'flush-telemetry', 'resync'] as const;

export const Command = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.command),
    id: Identifier,
    issuedAt: Timestamp,
    command: OneOf(COMMANDS, 'the command'),
  },
  { title: 'command', description: 'a command' },
);
export type Command = Static<typeof Command>;

/** Largest chunk an MQTT-only device may ask for: keeps each message well under broker limits. */
export const MAX_ARTIFACT_CHUNK = 256 * 1024;

export const ArtifactRequest = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.artifactRequest),
    deviceId: DeviceId,
    requestId: Identifier,
    sha256: Sha256,
    offset: Count,
    length: Type.Integer({ minimum: 1, maximum: MAX_ARTIFACT_CHUNK, description: `a length from 1 to ${MAX_ARTIFACT_CHUNK} bytes` }),
  },
  { title: 'artifact request', description: 'an artifact request' },
);
export type ArtifactRequest = Static<typeof ArtifactRequest>;

export const ArtifactChunk = Strict(
  {
    type: TypeTag(MESSAGE_TYPES.artifactChunk),
    requestId: Identifier,
    sha256: Sha256,
    offset: Count,
    total: Count,
    data: Type.String({ pattern: '^[A-Za-z0-9_-]*$', maxLength: Math.ceil((MAX_ARTIFACT_CHUNK * 4) / 3) }),
  },
  { title: 'artifact chunk', description: 'an artifact chunk' },
);
export type ArtifactChunk = Static<typeof ArtifactChunk>;
