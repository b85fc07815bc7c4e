import type { Static, TSchema } from 'typebox';
import type { TopicKind } from '../topics/index.ts';
import { SignedDesiredState } from './documents.ts';
import {
  ArtifactChunk,
  ArtifactRequest,
  Command,
  DeviceEvent,
  Presence,
  ReportedState,
  TelemetryAck,
  TelemetryWindow,
} from './messages.ts';

export * from './common.ts';
export * from './documents.ts';
export * from './messages.ts';

/** The schema of the message carried on each kind of topic. */
export const MESSAGE_SCHEMAS = {
  desired: SignedDesiredState,
  reported: ReportedState,
  presence: Presence,
  events: DeviceEvent,
  telemetry: TelemetryWindow,
  'telemetry-ack': TelemetryAck,
  commands: Command,
  'artifact-request': ArtifactRequest,
  'artifact-chunk': ArtifactChunk,
} as const satisfies Record<TopicKind, TSchema>;

export type MessageOf<K extends TopicKind> = Static<(typeof MESSAGE_SCHEMAS)[K]>;

/**
 * Default payload limits per topic kind, in bytes. They bound what a device can make the server
 * parse and what a retained message costs the broker; the broker's own payload limit should be at
 * least the largest of them.
 */
export const MESSAGE_LIMITS: Readonly<Record<TopicKind, number>> = {
  desired: 512 * 1024, // up to 32 model entries of at most PROTOCOL_DEFAULTS.maxDesiredEntryBytes each
  reported: 64 * 1024,
  presence: 1024,
  events: 16 * 1024,
  telemetry: 256 * 1024, // up to 512 feature profiles with sketches
  'telemetry-ack': 16 * 1024,
  commands: 4 * 1024,
  'artifact-request': 4 * 1024,
  'artifact-chunk': 400 * 1024, // 256 KiB of data as base64url plus framing
};
