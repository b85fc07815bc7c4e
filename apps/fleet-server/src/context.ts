import type { TopicScheme } from '@edgefleet/protocol';
import type {} from '@fastify/multipart';
import type {} from '@fastify/swagger';
import type { onRequestAsyncHookHandler } from 'fastify';
import type { Kysely } from 'kysely';
import type { ArtifactStore } from './artifacts/store.ts';
import type { Principal } from './auth/index.ts';
import type { FleetBroker } from './broker/index.ts';
import type { ServerConfig } from './config/index.ts';
import type { DesiredStateService } from './desired/index.ts';
import type { DeviceAuthenticator } from './devices/credentials.ts';
import type { DeviceHistory } from './devices/history.ts';
import type { EvaluationRunner } from './evaluation/runner.ts';
import type { FleetKeys } from './keys/index.ts';
import type { ServerMetrics } from './metrics/index.ts';
import type { ModelCheck } from './registry/model-check.ts';
import type { Database } from './store/schema.ts';
import type { WriteBehind } from './store/write-behind.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The request body as the OpenAPI document shows it, for routes that read their own body (multipart, CSV). */
    docBody?: unknown;
  }
  interface FastifyRequest {
    /** Who made the request, set by the auth pre-handlers. */
    principal?: Principal;
  }
}

/** What route modules share: the seams, passed in, never globals. */
export interface ServerContext {
  readonly config: ServerConfig;
  readonly db: Kysely<Database>;
  /** Batched device updates (presence, reported state): flush before reading them back. */
  readonly writes: WriteBehind;
  /** Device events kept for each device's history: flush before reading them back. */
  readonly history: DeviceHistory;
  readonly artifacts: ArtifactStore;
  readonly keys: FleetKeys;
  readonly topics: TopicScheme;
  readonly devices: DeviceAuthenticator;
  readonly metrics: ServerMetrics;
  readonly broker: () => FleetBroker;
  readonly desired: DesiredStateService;
  /** Loads uploaded models in onnxruntime (bounded in time) and computes golden vectors. */
  readonly modelCheck: ModelCheck;
  /** Runs evaluations of versions on labelled datasets (jobs in the database). */
  readonly evaluations: EvaluationRunner;
  readonly requireAdmin: onRequestAsyncHookHandler;
  readonly requireRead: onRequestAsyncHookHandler;
  /** Admin/read tokens, or a device's own credential (HTTP Basic deviceId:secret). */
  readonly requireReadOrDevice: onRequestAsyncHookHandler;
  /** Deletes artifacts no model version refers to. */
  collectArtifacts(): Promise<void>;
}
