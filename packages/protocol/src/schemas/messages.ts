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

export const ReportedModel = Strict(
  {
    name: ModelName,
    state: OneOf(MODEL_STATES, 'the model state'),
    active: Type.Optional(
      Strict({
        version: Semver,
        sha256: Sha256,
        executionProvider: ExecutionProviderSchema,
        activatedAt: Timestamp,
      }),
    ),
    previous: Type.Optional(Strict({ version: Semver, sha256: Sha256 })),
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
    fallback: Type.Optional(
      Strict({
        from: ExecutionProviderSchema,
        to: ExecutionProviderSchema,
        reason: Type.String({ maxLength: 2000 }),
      }),
    ),
    error: Type.Optional(ErrorInfo),
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
 * A mergeable sketch of a distribution: logarithmic buckets with a guaranteed relative accuracy
 * (DDSketch). Bucket i holds values in (gamma^(i-1), gamma^i] with gamma = (1+a)/(1-a).
 * Merging two sketches of the same accuracy adds their buckets.
 */
export const LogBucketSketch = Strict(
  {
    relativeAccuracy: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, description: 'a relative accuracy between 0 and 1' }),
    zeroCount: Count,
    positive: Strict({ offset: Type.Integer({ minimum: -100000, maximum: 100000 }), counts: Type.Array(Count, { maxItems: 4096 }) }),
    negative: Strict({ offset: Type.Integer({ minimum: -100000, maximum: 100000 }), counts: Type.Array(Count, { maxItems: 4096 }) }),
  },
  { description: 'a log-bucket sketch' },
);

/** Moments (Welford) plus a sketch: enough for means, variances, quantiles and drift tests. */
export const NumericSummary = Strict(
  {
    count: Count,
    nonFinite: Count,
    min: Type.Optional(Type.Number()),
    max: Type.Optional(Type.Number()),
    mean: Type.Number(),
    m2: Type.Number({ minimum: 0, description: 'the sum of squared deviations from the mean' }),
    sketch: LogBucketSketch,
  },
  { description: 'a numeric summary: count, min, max, mean, m2, sketch' },
);

export const CategoricalSummary = Strict(
  {
    counts: Type.Array(Strict({ value: Type.String({ maxLength: 128 }), count: Count }), { maxItems: 256 }),
    otherCount: Count,
  },
  { description: 'a categorical summary: the most frequent values and a count of the rest' },
);

export const FeatureProfile = Strict(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    count: Count,
    missing: Count,
    numeric: Type.Optional(NumericSummary),
    categorical: Type.Optional(CategoricalSummary),
  },
  { description: 'the profile of one feature over a window' },
);

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
    latencyMs: NumericSummary,
    inputs: Type.Array(FeatureProfile, { maxItems: 512 }),
    outputs: Type.Array(FeatureProfile, { maxItems: 512 }),
    /** Windows dropped on the device since the last delivered one (queue overflow). */
    dropped: Count,
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
