/** The database as Kysely sees it: one interface per table, the same for SQLite and PostgreSQL. */
import type { Generated } from 'kysely';

export interface ModelsTable {
  name: string;
  created_at: string;
}

export interface ModelVersionsTable {
  name: string;
  version: string;
  sha256: string;
  size: number;
  /** The signed manifest, JSON. */
  manifest: string;
  metadata: string;
  /** What registration measured of each variant (registry/variants.ts VariantReport[]), JSON; null without variants. */
  variants: string | null;
  created_at: string;
  created_by: string;
}

/** The artifacts of a version: the model itself (role `model`) and every file its manifest lists. */
export interface VersionArtifactsTable {
  name: string;
  version: string;
  sha256: string;
  role: string;
}

/** A deleted version's tombstone: its number stays bound to its bytes. */
export interface DeletedVersionsTable {
  name: string;
  version: string;
  sha256: string;
  deleted_at: string;
  deleted_by: string;
}

export interface AliasesTable {
  name: string;
  alias: string;
  version: string;
  updated_at: string;
}

export interface DevicesTable {
  id: string;
  /** `sha256$<hex>` of the device secret (earlier versions: `scrypt$<salt>$<hash>`, rewritten on use). */
  secret_hash: string;
  tags: string;
  status: 'active' | 'revoked';
  created_at: string;
  last_seen_at: string | null;
  online: number;
  /** Last retained reported state, JSON. */
  reported: string | null;
  /** 1 when the reported state has a model in the failed state. */
  failing: Generated<number>;
}

export interface EnrollmentTokensTable {
  id: string;
  token_hash: string;
  tags: string;
  uses_left: number | null;
  expires_at: string | null;
  created_at: string;
  name: string | null;
  revoked_at: string | null;
  created_by: string | null;
}

export interface AdminTokensTable {
  id: string;
  token_hash: string;
  scope: 'admin' | 'read';
  name: string;
  created_at: string;
  revoked_at: string | null;
  expires_at: string | null;
  created_by: string | null;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: string;
  actor: string;
  /** The acting token's name when it acted (admin and enrollment tokens). */
  actor_name: string | null;
  action: string;
  target: string;
  before: string | null;
  after: string | null;
}

/** The last signed desired-state document of each device: re-published (retained) on start. */
export interface ReferenceProfilesTable {
  model: string;
  version: string;
  /** Where it came from, e.g. `telemetry 2026-11-26T00:00:00Z/2026-11-26T01:00:00Z`. */
  source: string;
  windows: number;
  runs: number;
  /** `[{ name, profile }]` in @edgefleet/drift's wire form (JSON). */
  features: string;
  created_at: string;
  created_by: string;
}

export interface DriftScoresTable {
  model: string;
  version: string;
  /** The device group: a tag, or `*` for every device. */
  group_tag: string;
  bucket_start: string;
  bucket_end: string;
  devices: number;
  windows: number;
  runs: number;
  /** Features compared with the reference. */
  compared: number;
  /** Share of the compared features that drifted (0-1). */
  score: number;
  drifted: number;
  /** JSON: names of the features that drifted. */
  drifted_features: string;
  /** JSON: `{ feature: DriftResult }`. */
  results: string;
  evaluated_at: string;
}

export interface DriftAlertsTable {
  id: string;
  model: string;
  version: string;
  group_tag: string;
  state: 'firing' | 'resolved';
  opened_at: string;
  resolved_at: string | null;
  first_bucket: string;
  last_bucket: string;
  score: number;
  /** JSON: the features that drifted in the buckets that opened it. */
  features: string;
}

export interface WebhookDeliveriesTable {
  id: string;
  alert_id: string;
  event: string;
  /** The exact bytes signed and sent. */
  body: string;
  created_at: string;
  attempts: number;
  next_attempt_at: string;
  delivered_at: string | null;
  response_status: number | null;
  last_error: string | null;
}

export interface TelemetryWindowsTable {
  device_id: string;
  boot_id: string;
  seq: number;
  model: string;
  version: string;
  window_start: string;
  window_end: string;
  runs: number;
  /** Windows the device dropped (queue overflow) before this one. */
  dropped: number;
  /** The window as the device sent it (JSON). */
  body: string;
  received_at: string;
}

export interface DeviceDesiredTable {
  device_id: string;
  sequence: number;
  document: string;
  updated_at: string;
}

export type RolloutState = 'running' | 'paused' | 'rolling_back' | 'completed' | 'rolled_back' | 'aborted';
/** `shadowing`: a member of a shadow stage runs the version in shadow (it answers with its own). */
export type RolloutDeviceStatus = 'pending' | 'assigned' | 'shadowing' | 'active' | 'failed' | 'rolled_back';

export interface RolloutsTable {
  id: string;
  model: string;
  version: string;
  /** The rollout as created (selector, stages, gates, policy), JSON. */
  spec: string;
  state: RolloutState;
  current_stage: number;
  stage_started_at: string;
  /** Why it paused or rolled back: the gate and the numbers, JSON. */
  reason: string | null;
  created_at: string;
  created_by: string;
  updated_at: string;
}

/** An artifact kept in the database (artifacts/database.ts): it exists once this row does. */
export interface ArtifactBlobsTable {
  sha256: string;
  size: number;
  created_at: string;
}

/** Its bytes, 1 MiB per row. */
export interface ArtifactChunksTable {
  sha256: string;
  seq: number;
  bytes: Uint8Array;
}

/** Facts every replica must agree on (the signing key set): name → JSON. */
export interface SettingsTable {
  name: string;
  value: string;
}

/** Who drives a job (a rollout, the drift pass) among the server replicas: rollouts/lease.ts. */
export interface LeasesTable {
  name: string;
  holder: string;
  /** Incremented on every takeover: a stalled holder's writes are refused by it. */
  fence: number;
  /** ms since the epoch. */
  expires_at: number;
}

export interface RolloutDevicesTable {
  rollout_id: string;
  device_id: string;
  /** Deterministic position in [0, 1): hash of rollout id and device id. */
  cohort: number;
  /** The first stage that includes this device. */
  stage: number;
  status: RolloutDeviceStatus;
  /** The version the device ran before (what a rollback returns it to). */
  previous_version: string | null;
  /** The device's desired-state entry of this model before the rollout (JSON), restored as is by a rollback; null: none. */
  previous_entry: string | null;
  error_code: string | null;
  /** The device's install-time p95 latency of this version over the one it replaced (null: not measured). */
  latency_ratio: number | null;
  updated_at: string;
}

/** One event a device reported (DeviceEvent), kept for its history; download progress is not kept. */
export interface DeviceEventsTable {
  id: Generated<number>;
  device_id: string;
  boot_id: string;
  seq: number;
  /** When the device says it happened. */
  at: string;
  received_at: string;
  kind: string;
  model: string | null;
  version: string | null;
  rollout_id: string | null;
  error_code: string | null;
  /** The event as the device sent it (JSON). */
  body: string;
}

export interface IdempotencyKeysTable {
  /** sha256 of the caller's token id and the key: the key itself is never stored. */
  key_hash: string;
  method: string;
  path: string;
  /** sha256 of what the request asked (canonical JSON body, or a multipart body's fields and file hashes). */
  fingerprint: string | null;
  state: 'in_flight' | 'done';
  status: number | null;
  /** JSON: the response headers replayed (location, etag, content-type). */
  headers: string | null;
  /** The response body, AES-256-GCM under a key derived from the Idempotency-Key (base64url of iv, tag, data). */
  body: string | null;
  created_at: string;
  expires_at: string;
}

export type EvaluationStatus = 'queued' | 'running' | 'succeeded' | 'failed';

/** A version evaluated on a labelled dataset (evaluation/runner.ts): a job, then its metrics. */
export interface EvaluationsTable {
  id: string;
  model: string;
  version: string;
  dataset_sha256: string;
  dataset_name: string;
  dataset_format: string;
  dataset_size: number;
  /** The task mapping (evaluation/task.ts), JSON. */
  task: string;
  task_key: string;
  /** The variant evaluated; null: the reference (the manifest's own artifact). */
  variant: string | null;
  status: EvaluationStatus;
  samples: number;
  total: number | null;
  progress: number;
  /** The task metrics (evaluation/metrics.ts), JSON, once succeeded. */
  metrics: string | null;
  error_code: string | null;
  error_message: string | null;
  /** The replica running it, and when it last said so (a stale one is taken over). */
  runner: string | null;
  heartbeat_at: string | null;
  created_at: string;
  created_by: string;
  started_at: string | null;
  finished_at: string | null;
}

/** A model's promotion policy (evaluation/policy.ts), JSON. */
export interface ModelPoliciesTable {
  model: string;
  policy: string;
  updated_at: string;
  updated_by: string;
}

export interface Database {
  models: ModelsTable;
  model_versions: ModelVersionsTable;
  version_artifacts: VersionArtifactsTable;
  deleted_versions: DeletedVersionsTable;
  aliases: AliasesTable;
  devices: DevicesTable;
  enrollment_tokens: EnrollmentTokensTable;
  admin_tokens: AdminTokensTable;
  audit_log: AuditLogTable;
  device_desired: DeviceDesiredTable;
  telemetry_windows: TelemetryWindowsTable;
  reference_profiles: ReferenceProfilesTable;
  drift_scores: DriftScoresTable;
  drift_alerts: DriftAlertsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  rollouts: RolloutsTable;
  rollout_devices: RolloutDevicesTable;
  device_events: DeviceEventsTable;
  idempotency_keys: IdempotencyKeysTable;
  leases: LeasesTable;
  artifact_blobs: ArtifactBlobsTable;
  artifact_chunks: ArtifactChunksTable;
  settings: SettingsTable;
  evaluations: EvaluationsTable;
  model_policies: ModelPoliciesTable;
}
