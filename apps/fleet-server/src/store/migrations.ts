/**
 * Versioned migrations, in code, applied in order by Kysely's Migrator. Never edit one that has
 * shipped: add the next.
 */
import { type Kysely, sql } from 'kysely';
import type { Migration, MigrationProvider } from 'kysely/migration';

export type DialectKind = 'sqlite' | 'postgres';

function migrations(kind: DialectKind): Record<string, Migration> {
  return {
    '0001-registry-devices-audit': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('models')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('model_versions')
          .addColumn('name', 'text', (c) => c.notNull().references('models.name'))
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('size', 'bigint', (c) => c.notNull())
          .addColumn('manifest', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('model_versions_pk', ['name', 'version'])
          .execute();
        await db.schema.createIndex('model_versions_sha256').on('model_versions').column('sha256').execute();
        await db.schema
          .createTable('aliases')
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('alias', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('aliases_pk', ['name', 'alias'])
          .addForeignKeyConstraint('aliases_version_fk', ['name', 'version'], 'model_versions', ['name', 'version'])
          .execute();
        await db.schema
          .createTable('devices')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('secret_hash', 'text', (c) => c.notNull())
          .addColumn('tags', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('last_seen_at', 'text')
          .addColumn('online', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('reported', 'text')
          .execute();
        await db.schema
          .createTable('enrollment_tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('tags', 'text', (c) => c.notNull())
          .addColumn('uses_left', 'integer')
          .addColumn('expires_at', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('admin_tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('scope', 'text', (c) => c.notNull())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('revoked_at', 'text')
          .execute();
        await db.schema
          .createTable('audit_log')
          .addColumn('id', kind === 'postgres' ? 'serial' : 'integer', (c) =>
            kind === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('target', 'text', (c) => c.notNull())
          .addColumn('before', 'text')
          .addColumn('after', 'text')
          .execute();
        await db.schema.createIndex('audit_log_target').on('audit_log').columns(['target', 'at']).execute();
      },
    },
    '0002-desired-state': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('device_desired')
          .addColumn('device_id', 'text', (c) => c.primaryKey())
          .addColumn('sequence', 'bigint', (c) => c.notNull())
          .addColumn('document', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0003-rollouts': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('rollouts')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('model', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('spec', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('current_stage', 'integer', (c) => c.notNull())
          .addColumn('stage_started_at', 'text', (c) => c.notNull())
          .addColumn('reason', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('rollout_devices')
          .addColumn('rollout_id', 'text', (c) => c.notNull().references('rollouts.id'))
          .addColumn('device_id', 'text', (c) => c.notNull())
          .addColumn('cohort', 'real', (c) => c.notNull())
          .addColumn('stage', 'integer', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('previous_version', 'text')
          .addColumn('error_code', 'text')
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('rollout_devices_pk', ['rollout_id', 'device_id'])
          .execute();
        await db.schema.createIndex('rollout_devices_device').on('rollout_devices').column('device_id').execute();
      },
    },
    // A rollout's gates count its members by status and stage on every tick; with this index the
    // counts and the "who still waits" lookups read the index, not every member row.
    '0004-rollout-devices-status': {
      async up(db) {
        await db.schema.createIndex('rollout_devices_status').on('rollout_devices').columns(['rollout_id', 'status', 'stage']).execute();
      },
    },
    // The install-time latency probe a device reports with `activated`: new p95 / replaced p95.
    '0005-rollout-devices-latency': {
      async up(db) {
        await db.schema.alterTable('rollout_devices').addColumn('latency_ratio', 'real').execute();
      },
    },
    // Telemetry windows as devices sent them, once each: (device, boot, seq) is the key.
    '0006-telemetry-windows': {
      async up(db) {
        await db.schema
          .createTable('telemetry_windows')
          .addColumn('device_id', 'text', (c) => c.notNull())
          .addColumn('boot_id', 'text', (c) => c.notNull())
          .addColumn('seq', 'integer', (c) => c.notNull())
          .addColumn('model', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('window_start', 'text', (c) => c.notNull())
          .addColumn('window_end', 'text', (c) => c.notNull())
          .addColumn('runs', 'integer', (c) => c.notNull())
          .addColumn('dropped', 'integer', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('received_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('telemetry_windows_pk', ['device_id', 'boot_id', 'seq'])
          .execute();
        await db.schema
          .createIndex('telemetry_windows_model')
          .on('telemetry_windows')
          .columns(['model', 'version', 'window_end'])
          .execute();
      },
    },
    // A model version's reference profile: what "no drift" looks like, per feature.
    '0007-reference-profiles': {
      async up(db) {
        await db.schema
          .createTable('reference_profiles')
          .addColumn('model', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('windows', 'integer', (c) => c.notNull())
          .addColumn('runs', 'integer', (c) => c.notNull())
          .addColumn('features', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('reference_profiles_pk', ['model', 'version'])
          .execute();
      },
    },
    // Drift as a time series (one score per version, device group and time bucket), the alerts
    // it raised and every webhook delivery of them.
    '0008-drift-scores-alerts': {
      async up(db) {
        await db.schema.createIndex('telemetry_windows_received').on('telemetry_windows').columns(['received_at']).execute();
        await db.schema
          .createIndex('telemetry_windows_start')
          .on('telemetry_windows')
          .columns(['model', 'version', 'window_start'])
          .execute();
        await db.schema
          .createTable('drift_scores')
          .addColumn('model', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('group_tag', 'text', (c) => c.notNull())
          .addColumn('bucket_start', 'text', (c) => c.notNull())
          .addColumn('bucket_end', 'text', (c) => c.notNull())
          .addColumn('devices', 'integer', (c) => c.notNull())
          .addColumn('windows', 'integer', (c) => c.notNull())
          .addColumn('runs', 'integer', (c) => c.notNull())
          .addColumn('compared', 'integer', (c) => c.notNull())
          .addColumn('score', 'real', (c) => c.notNull())
          .addColumn('drifted', 'integer', (c) => c.notNull())
          .addColumn('drifted_features', 'text', (c) => c.notNull())
          .addColumn('results', 'text', (c) => c.notNull())
          .addColumn('evaluated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('drift_scores_pk', ['model', 'version', 'group_tag', 'bucket_start'])
          .execute();
        await db.schema
          .createTable('drift_alerts')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('model', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('group_tag', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('opened_at', 'text', (c) => c.notNull())
          .addColumn('resolved_at', 'text')
          .addColumn('first_bucket', 'text', (c) => c.notNull())
          .addColumn('last_bucket', 'text', (c) => c.notNull())
          .addColumn('score', 'real', (c) => c.notNull())
          .addColumn('features', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('drift_alerts_group').on('drift_alerts').columns(['model', 'version', 'group_tag', 'state']).execute();
        await db.schema
          .createTable('webhook_deliveries')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('alert_id', 'text', (c) => c.notNull())
          .addColumn('event', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull())
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('delivered_at', 'text')
          .addColumn('response_status', 'integer')
          .addColumn('last_error', 'text')
          .execute();
        await db.schema
          .createIndex('webhook_deliveries_pending')
          .on('webhook_deliveries')
          .columns(['delivered_at', 'next_attempt_at'])
          .execute();
      },
    },
    // Every artifact a version consists of (the model and its files, e.g. golden vectors), so that
    // serving, scoping and garbage collection know each file's version without parsing manifests.
    '0009-version-artifacts': {
      async up(db) {
        await db.schema
          .createTable('version_artifacts')
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('version_artifacts_pk', ['name', 'version', 'sha256'])
          .execute();
        await db.schema.createIndex('version_artifacts_sha256').on('version_artifacts').column('sha256').execute();
        const typed = db as unknown as Kysely<{
          model_versions: { name: string; version: string; sha256: string; manifest: string };
          version_artifacts: { name: string; version: string; sha256: string; role: string };
        }>;
        for (const row of await typed.selectFrom('model_versions').select(['name', 'version', 'sha256', 'manifest']).execute()) {
          const files = (JSON.parse(row.manifest) as { payload: { files: { sha256: string; role: string }[] } }).payload.files;
          const rows = new Map([[row.sha256, 'model'], ...files.map((f) => [f.sha256, f.role] as [string, string])]);
          await typed
            .insertInto('version_artifacts')
            .values([...rows].map(([sha256, role]) => ({ name: row.name, version: row.version, sha256, role })))
            .execute();
        }
      },
    },
    // What a rollout replaced on each device, exactly (its signed model entry, JSON): abort and
    // rollback put it back as it was.
    '0010-rollout-previous-entry': {
      async up(db) {
        await db.schema.alterTable('rollout_devices').addColumn('previous_entry', 'text').execute();
      },
    },
    // A deleted version keeps its number bound to its bytes: name@version means one sha256 forever.
    '0011-deleted-versions': {
      async up(db) {
        await db.schema
          .createTable('deleted_versions')
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('deleted_at', 'text', (c) => c.notNull())
          .addColumn('deleted_by', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('deleted_versions_pk', ['name', 'version'])
          .execute();
      },
    },
    // Every credential has a lifecycle (issue 14): admin tokens expire; enrollment tokens are
    // named and revoked; the audit log records the name of the token that acted, as it was then.
    '0012-credential-lifecycle': {
      async up(db) {
        await db.schema.alterTable('admin_tokens').addColumn('expires_at', 'text').execute();
        await db.schema.alterTable('admin_tokens').addColumn('created_by', 'text').execute();
        await db.schema.alterTable('enrollment_tokens').addColumn('name', 'text').execute();
        await db.schema.alterTable('enrollment_tokens').addColumn('revoked_at', 'text').execute();
        await db.schema.alterTable('enrollment_tokens').addColumn('created_by', 'text').execute();
        await db.schema.alterTable('audit_log').addColumn('actor_name', 'text').execute();
      },
    },
    // What happened on each device (installs, failures, rollbacks, with codes and times), as the
    // device reported it: the per-device history. One row per event, deduplicated by boot and seq.
    '0013-device-events': {
      async up(db) {
        await db.schema
          .createTable('device_events')
          .addColumn('id', kind === 'postgres' ? 'bigserial' : 'integer', (c) =>
            kind === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('device_id', 'text', (c) => c.notNull())
          .addColumn('boot_id', 'text', (c) => c.notNull())
          .addColumn('seq', 'integer', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('received_at', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('model', 'text')
          .addColumn('version', 'text')
          .addColumn('rollout_id', 'text')
          .addColumn('error_code', 'text')
          .addColumn('body', 'text', (c) => c.notNull())
          .addUniqueConstraint('device_events_once', ['device_id', 'boot_id', 'seq'])
          .execute();
        await db.schema.createIndex('device_events_device').on('device_events').columns(['device_id', 'id']).execute();
        await db.schema.createIndex('device_events_received').on('device_events').column('received_at').execute();
        // Whether a device is failing a model (devices/failing.ts), judged when its reported state
        // is written, so lists filter and the fleet summary counts in SQL.
        await db.schema
          .alterTable('devices')
          .addColumn('failing', 'integer', (c) => c.notNull().defaultTo(0))
          .execute();
        // Existing rows are judged on their next report: a device reports on every (re)connection.
      },
    },
    // Idempotency-Key (issue 14): a creating POST retried with the same key gets the first
    // answer. The answer is stored encrypted under a key derived from the Idempotency-Key (which
    // is never stored): it may hold a secret shown once, such as a new device's.
    '0014-idempotency-keys': {
      async up(db) {
        await db.schema
          .createTable('idempotency_keys')
          .addColumn('key_hash', 'text', (c) => c.primaryKey())
          .addColumn('method', 'text', (c) => c.notNull())
          .addColumn('path', 'text', (c) => c.notNull())
          .addColumn('fingerprint', 'text')
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('status', 'integer')
          .addColumn('headers', 'text')
          .addColumn('body', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('idempotency_keys_expires').on('idempotency_keys').column('expires_at').execute();
      },
    },
    // Several replicas (issue 16): who drives each rollout and the drift pass, with a fence
    // (rollouts/lease.ts).
    '0015-leases': {
      async up(db) {
        await db.schema
          .createTable('leases')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('holder', 'text', (c) => c.notNull())
          .addColumn('fence', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .execute();
      },
    },
    // Artifacts in the database, shared by replicas (artifacts/database.ts), and the settings
    // every replica must agree on.
    '0016-artifacts-in-database': {
      async up(db) {
        await db.schema
          .createTable('artifact_blobs')
          .addColumn('sha256', 'text', (c) => c.primaryKey())
          .addColumn('size', 'bigint', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('artifact_chunks')
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('seq', 'integer', (c) => c.notNull())
          .addColumn('bytes', kind === 'postgres' ? 'bytea' : 'blob', (c) => c.notNull())
          .addPrimaryKeyConstraint('artifact_chunks_pk', ['sha256', 'seq'])
          .execute();
        await db.schema
          .createTable('settings')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .execute();
      },
    },
    // Model quality (issue 17): evaluations of versions on labelled held-out datasets (jobs with
    // progress; the dataset is an artifact), and each model's promotion policy.
    '0017-evaluations': {
      async up(db) {
        await db.schema
          .createTable('evaluations')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('model', 'text', (c) => c.notNull())
          .addColumn('version', 'text', (c) => c.notNull())
          .addColumn('dataset_sha256', 'text', (c) => c.notNull())
          .addColumn('dataset_name', 'text', (c) => c.notNull())
          .addColumn('dataset_format', 'text', (c) => c.notNull())
          .addColumn('dataset_size', 'bigint', (c) => c.notNull())
          .addColumn('task', 'text', (c) => c.notNull())
          .addColumn('task_key', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('samples', 'integer', (c) => c.notNull())
          .addColumn('total', 'integer')
          .addColumn('progress', 'real', (c) => c.notNull())
          .addColumn('metrics', 'text')
          .addColumn('error_code', 'text')
          .addColumn('error_message', 'text')
          .addColumn('runner', 'text')
          .addColumn('heartbeat_at', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('started_at', 'text')
          .addColumn('finished_at', 'text')
          .addUniqueConstraint('evaluations_unique', ['model', 'version', 'dataset_sha256', 'task_key'])
          .execute();
        await db.schema.createIndex('evaluations_status').on('evaluations').column('status').execute();
        await db.schema
          .createTable('model_policies')
          .addColumn('model', 'text', (c) => c.primaryKey())
          .addColumn('policy', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addColumn('updated_by', 'text', (c) => c.notNull())
          .execute();
      },
    },
    // Variants (issue 17): what registration measured of each variant of a version (JSON), and
    // which variant an evaluation ran on (null: the reference).
    '0018-variants': {
      async up(db) {
        await db.schema.alterTable('model_versions').addColumn('variants', 'text').execute();
        await db.schema.alterTable('evaluations').addColumn('variant', 'text').execute();
      },
    },
    // Counts a device sends (or sums of them) are integers up to 2^53 - 1: on PostgreSQL, 64-bit
    // columns (a 32-bit one refused a value past 2^31, and the whole batch written with it).
    // SQLite's integers are 64-bit already.
    '0019-wide-counts': {
      async up(db) {
        if (kind !== 'postgres') return;
        await sql`alter table telemetry_windows alter column seq type bigint, alter column runs type bigint, alter column dropped type bigint`.execute(
          db,
        );
        await sql`alter table device_events alter column seq type bigint`.execute(db);
        await sql`alter table reference_profiles alter column windows type bigint, alter column runs type bigint`.execute(db);
        await sql`alter table drift_scores alter column devices type bigint, alter column windows type bigint, alter column runs type bigint, alter column compared type bigint`.execute(
          db,
        );
      },
    },
    // A telemetry window's body is JSON around base64 sketches: PostgreSQL's default compression
    // (pglz) tried every one and kept none (the same 34 MB for 10,000 windows either way), a fifth
    // of the insert's CPU. Stored out of line as it is (new rows; SQLite never compresses).
    '0020-telemetry-body-uncompressed': {
      async up(db) {
        if (kind !== 'postgres') return;
        await sql`alter table telemetry_windows alter column body set storage external`.execute(db);
      },
    },
  };
}

export function migrationProvider(kind: DialectKind): MigrationProvider {
  return { getMigrations: async () => migrations(kind) };
}
