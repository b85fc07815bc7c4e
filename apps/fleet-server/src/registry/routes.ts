/**
 * The model registry API. Versions are semver and immutable; aliases (production, canary...) move
 * between versions; every change is audited.
 */
import { open, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  assertModelName,
  checkDeliverable,
  checkGoldenVectors,
  createManifest,
  type DesiredStatePayload,
  EdgefleetError,
  EXECUTION_PROVIDERS,
  encodeGoldenVectors,
  GOLDEN_VECTORS_FILE,
  GoldenVector,
  goldenVectorsEntry,
  Identifier,
  isSemver,
  ManifestPayload,
  parseJson,
  type ReportedState,
  type SignedDocument,
  signManifest,
  TelemetrySpec,
  TensorData,
  Tolerance,
  validate,
} from '@edgefleet/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kysely, Transaction } from 'kysely';
import Type from 'typebox';
import type { StagedUpload } from '../artifacts/store.ts';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { storeReference } from '../drift/scoring.ts';
import type { Database } from '../store/schema.ts';
import { type DatasetProfile, datasetFormat, profileDataset } from '../telemetry/reference-dataset.ts';
import { readOnnxSummary } from './onnx.ts';

const JSON_FIELD_LIMIT = 8 * 1024 * 1024;

const UploadFields = Type.Object(
  {
    version: Type.String({ maxLength: 64, description: 'a semantic version such as 1.4.0' }),
    metadata: Type.Optional(ManifestPayload.properties.metadata),
    goldenVectors: Type.Optional(Type.Array(GoldenVector, { maxItems: 16 })),
    sampleInputs: Type.Optional(Type.Array(Type.Array(TensorData, { minItems: 1, maxItems: 64 }), { maxItems: 16 })),
    tolerance: Type.Optional(Tolerance),
    executionProviders: Type.Optional(Type.Array(Type.Enum(EXECUTION_PROVIDERS), { minItems: 1, maxItems: 3, uniqueItems: true })),
    deviceClasses: Type.Optional(Type.Array(Identifier, { minItems: 1, maxItems: 64 })),
    telemetry: Type.Optional(TelemetrySpec),
  },
  { additionalProperties: false, title: 'upload fields' },
);

const JSON_FIELDS = new Set(['metadata', 'goldenVectors', 'sampleInputs', 'tolerance', 'executionProviders', 'deviceClasses', 'telemetry']);

const NameParams = Type.Object({ name: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const VersionParams = Type.Object(
  { name: Type.String({ maxLength: 64 }), version: Type.String({ maxLength: 64 }) },
  { additionalProperties: false },
);
const AliasParams = Type.Object(
  { name: Type.String({ maxLength: 64 }), alias: Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }) },
  { additionalProperties: false },
);
const AliasBody = Type.Object({ version: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

function versionOf(text: string): string {
  if (!isSemver(text)) throw new EdgefleetError('EF_VERSION_INVALID', `"${text.slice(0, 64)}" is not a semantic version`);
  return text;
}

/** A version's row; EF_NOT_FOUND when the registry has no such version. */
export async function findVersion(db: Kysely<Database>, name: string, version: string) {
  const row = await db.selectFrom('model_versions').selectAll().where('name', '=', name).where('version', '=', version).executeTakeFirst();
  if (!row) throw new EdgefleetError('EF_NOT_FOUND', `${name}@${version} is not in the registry`);
  return row;
}

/**
 * What goes wrong while reading a multipart body that is not ours to fix: a missing or wrong
 * boundary, a truncated or garbled body. busboy reports these as plain Errors, which would
 * otherwise answer 500; they are the client's (EF_MULTIPART_INVALID). Coded errors, fastify's own
 * (limits) and the system's (a full disk) pass through as they are.
 */
function asUploadError(error: unknown): unknown {
  if (error instanceof EdgefleetError) return error;
  const { code, statusCode } = error as { code?: unknown; statusCode?: unknown };
  if (typeof statusCode === 'number' || (typeof code === 'string' && /^(E[A-Z]+|ERR_FS_)/.test(code) && !code.startsWith('ERR_STREAM'))) {
    return error;
  }
  return new EdgefleetError(
    'EF_MULTIPART_INVALID',
    `the multipart body is malformed: ${String((error as Error).message ?? error).slice(0, 200)}`,
    {
      cause: error,
    },
  );
}

/** How many ids a refusal names before "and N more". */
const NAMED = 5;

function named(ids: readonly string[]): string {
  return `${ids.slice(0, NAMED).join(', ')}${ids.length > NAMED ? ` and ${ids.length - NAMED} more` : ''}`;
}

/**
 * What still needs a version, in words: rollouts that install it or would roll back to it, and
 * devices whose desired state names it or that report running it (active or as the version they
 * would roll back to). Deleting any of these would leave a rollout unable to finish or a device
 * unable to get back what it runs (THREATS 23).
 */
async function versionUsers(trx: Transaction<Database>, name: string, version: string): Promise<string[]> {
  const users: string[] = [];
  const live = ['running', 'paused', 'rolling_back'] as const;
  const installing = await trx
    .selectFrom('rollouts')
    .select('id')
    .where('model', '=', name)
    .where('version', '=', version)
    .where('state', 'in', live)
    .execute();
  if (installing.length > 0) users.push(`rollout ${named(installing.map((r) => r.id))} installs it`);
  const returning = await trx
    .selectFrom('rollout_devices')
    .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
    .select('rollouts.id')
    .distinct()
    .where('rollouts.model', '=', name)
    .where('rollouts.state', 'in', live)
    .where('rollout_devices.previous_version', '=', version)
    .execute();
  if (returning.length > 0) users.push(`rollout ${named(returning.map((r) => r.id))} would roll devices back to it`);
  // Documents and reports are JSON: a text match narrows the rows, parsing decides. A semantic
  // version has no LIKE wildcard (% or _) in it.
  const mention = `%"version":"${version}"%`;
  const desired = await trx.selectFrom('device_desired').select(['device_id', 'document']).where('document', 'like', mention).execute();
  const meant = desired
    .filter((r) =>
      (JSON.parse(r.document) as SignedDocument<DesiredStatePayload>).payload.models.some(
        (m) => m.manifest.payload.name === name && m.manifest.payload.version === version,
      ),
    )
    .map((r) => r.device_id);
  if (meant.length > 0) users.push(`the desired state of device ${named(meant)} names it`);
  const reported = await trx.selectFrom('devices').select(['id', 'reported']).where('reported', 'like', mention).execute();
  const running = reported
    .filter((r) =>
      (JSON.parse(r.reported ?? '{"models":[]}') as ReportedState).models.some(
        (m) => m.name === name && (m.active?.version === version || m.previous?.version === version),
      ),
    )
    .map((r) => r.id);
  if (running.length > 0) users.push(`device ${named(running)} reports running it or keeping it to roll back to`);
  return users;
}

function summarizeRow(row: {
  name: string;
  version: string;
  sha256: string;
  size: number;
  created_at: string;
  created_by: string;
  metadata: string;
}) {
  return {
    name: row.name,
    version: row.version,
    sha256: row.sha256,
    size: Number(row.size),
    createdAt: row.created_at,
    createdBy: row.created_by,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
  };
}

export async function registerRegistryRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  const { db, artifacts, keys, config } = context;

  /**
   * Reads the multipart body: fields (JSON ones parsed), the model streamed to a staged file, the
   * optional reference dataset profiled as it streams. On any failure the staged file is gone and
   * the error is coded (see asUploadError).
   */
  async function readUpload(
    request: FastifyRequest,
    name: string,
  ): Promise<{
    raw: Record<string, unknown>;
    staged: StagedUpload | undefined;
    reference: (DatasetProfile & { fileName: string }) | undefined;
  }> {
    const raw: Record<string, unknown> = {};
    let staged: StagedUpload | undefined;
    let reference: (DatasetProfile & { fileName: string }) | undefined;
    try {
      for await (const part of request.parts()) {
        if (part.type === 'file' && part.fieldname === 'reference' && !reference) {
          const format = datasetFormat(part.filename, part.mimetype);
          if (!format) {
            part.file.resume();
            throw new EdgefleetError(
              'EF_REFERENCE_INVALID',
              `the reference dataset "${part.filename.slice(0, 64)}" is neither CSV (.csv, text/csv) nor JSON lines (.jsonl, application/x-ndjson)`,
            );
          }
          const telemetry = raw.telemetry === undefined ? undefined : validate(TelemetrySpec, raw.telemetry);
          const profile = await profileDataset(part.file, {
            format,
            maxBytes: config.maxReferenceBytes,
            ...(telemetry ? { telemetry } : {}),
          });
          reference = { ...profile, fileName: part.filename.slice(0, 128) };
        } else if (part.type === 'file') {
          if (part.fieldname !== 'model' || staged) {
            part.file.resume();
            throw new EdgefleetError(
              'EF_SCHEMA_INVALID',
              `the upload takes one file named "model" and one named "reference" (got "${part.fieldname.slice(0, 64)}")`,
            );
          }
          if (typeof raw.version !== 'string') {
            part.file.resume();
            throw new EdgefleetError('EF_SCHEMA_INVALID', 'send the "version" field before the "model" file in the multipart body');
          }
          const version = versionOf(raw.version);
          const existing = await db
            .selectFrom('model_versions')
            .select('version')
            .where('name', '=', name)
            .where('version', '=', version)
            .executeTakeFirst();
          if (existing) {
            part.file.resume();
            throw new EdgefleetError('EF_MODEL_VERSION_EXISTS', `${name}@${version} already exists`);
          }
          staged = await artifacts.stage(part.file, config.maxModelBytes);
        } else {
          if (!UploadFields.properties[part.fieldname as keyof typeof UploadFields.properties]) {
            throw new EdgefleetError('EF_SCHEMA_INVALID', `unknown upload field "${part.fieldname.slice(0, 64)}"`);
          }
          if (part.fieldname === 'telemetry' && reference) {
            throw new EdgefleetError(
              'EF_SCHEMA_INVALID',
              'send the "telemetry" field before the "reference" file: its columns are checked against it',
            );
          }
          const value = String(part.value);
          raw[part.fieldname] = JSON_FIELDS.has(part.fieldname) ? parseJson(value, { maxBytes: JSON_FIELD_LIMIT }) : value;
        }
      }
      return { raw, staged, reference };
    } catch (error) {
      if (staged) await artifacts.discard(staged);
      throw asUploadError(error);
    }
  }

  app.post(
    '/v1/models/:name/versions',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary:
          'Upload a model version (multipart: fields first, then the ONNX file as "model" and optionally a reference dataset, CSV or JSON lines, as "reference")',
        params: NameParams,
        consumes: ['multipart/form-data'],
      },
    },
    async (request, reply) => {
      const name = assertModelName((request.params as { name: string }).name);
      const upload = await readUpload(request, name);
      const { raw, reference } = upload;
      let staged = upload.staged;
      let goldenFile: StagedUpload | undefined;
      try {
        if (!staged) throw new EdgefleetError('EF_SCHEMA_INVALID', 'the upload has no "model" file');
        const fields = validate(UploadFields, raw);
        const version = versionOf(fields.version);

        const handle = await open(staged.path, 'r');
        const summary = await readOnnxSummary(handle).finally(() => handle.close());
        // Every model is loaded in onnxruntime before it is signed; sample inputs run in the same session.
        const computed = await context.modelCheck.check(await readFile(staged.path), fields.sampleInputs ?? [], summary.outputs);
        const vectors = [...(fields.goldenVectors ?? []), ...computed];
        checkGoldenVectors({ model: summary }, vectors, `${name}@${version}`);
        // Golden vectors travel as a file the manifest lists by hash, never inline: one realistic
        // sample image is hundreds of kilobytes, and manifests ride in every desired-state document.
        if (vectors.length > 0) goldenFile = await artifacts.stage(Readable.from([encodeGoldenVectors(vectors)]), Number.MAX_SAFE_INTEGER);
        const now = Date.now();
        const payload = createManifest({
          name,
          version,
          now,
          ttlMs: config.manifestTtlDays * 24 * 3600 * 1000,
          artifact: { sha256: staged.sha256, size: staged.size, mediaType: 'application/x-onnx' },
          files: goldenFile ? [goldenVectorsEntry(goldenFile.sha256, goldenFile.size)] : [],
          model: {
            format: 'onnx',
            irVersion: summary.irVersion,
            opsets: summary.opsets.slice(0, 32),
            inputs: summary.inputs,
            outputs: summary.outputs,
            operators: summary.operators.filter((op) => op.length <= 128).slice(0, 1024),
            quantization: summary.quantization,
          },
          runtime: {
            executionProviders: fields.executionProviders ?? ['webgpu', 'wasm', 'cpu'],
            ...(fields.deviceClasses ? { deviceClasses: fields.deviceClasses } : {}),
          },
          ...(goldenFile
            ? {
                acceptance: {
                  tolerance: fields.tolerance ?? { absolute: 1e-4, relative: 1e-3 },
                  vectors: [],
                  vectorsFile: GOLDEN_VECTORS_FILE.name,
                },
              }
            : {}),
          ...(fields.telemetry ? { telemetry: fields.telemetry } : {}),
          ...(fields.metadata ? { metadata: fields.metadata } : {}),
        });
        const manifest = signManifest(payload, [keys.signing]);
        // What cannot travel to a device is refused now, not discovered by a stuck rollout.
        checkDeliverable(manifest);

        // The bytes go under their hash first, the row last: a crash in between leaves an
        // unreferenced file (collected on start), never a version without its bytes.
        await artifacts.commit(staged);
        staged = undefined;
        if (goldenFile) await artifacts.commit(goldenFile);
        goldenFile = undefined;
        const actor = request.principal?.id ?? 'unknown';
        await db.transaction().execute(async (trx) => {
          await trx
            .insertInto('models')
            .values({ name, created_at: new Date(now).toISOString() })
            .onConflict((oc) => oc.column('name').doNothing())
            .execute();
          const clash = await trx
            .selectFrom('model_versions')
            .select('version')
            .where('name', '=', name)
            .where('version', '=', version)
            .executeTakeFirst();
          if (clash) throw new EdgefleetError('EF_MODEL_VERSION_EXISTS', `${name}@${version} already exists`);
          const tombstone = await trx
            .selectFrom('deleted_versions')
            .select(['sha256', 'deleted_at'])
            .where('name', '=', name)
            .where('version', '=', version)
            .executeTakeFirst();
          if (tombstone && tombstone.sha256 !== payload.artifact.sha256) {
            throw new EdgefleetError(
              'EF_MODEL_VERSION_DELETED',
              `${name}@${version} was deleted at ${tombstone.deleted_at}; it named the model with sha256 ${tombstone.sha256.slice(0, 12)}…, not these bytes (${payload.artifact.sha256.slice(0, 12)}…)`,
            );
          }
          await trx
            .insertInto('model_versions')
            .values({
              name,
              version,
              sha256: payload.artifact.sha256,
              size: payload.artifact.size,
              manifest: JSON.stringify(manifest),
              metadata: JSON.stringify(fields.metadata ?? {}),
              created_at: new Date(now).toISOString(),
              created_by: actor,
            })
            .execute();
          await trx
            .insertInto('version_artifacts')
            .values([
              { name, version, sha256: payload.artifact.sha256, role: 'model' },
              ...payload.files
                .filter((f) => f.sha256 !== payload.artifact.sha256)
                .map((f) => ({ name, version, sha256: f.sha256, role: f.role })),
            ])
            .execute();
          await audit(trx, {
            actor,
            action: 'model.version.create',
            target: `model:${name}@${version}`,
            after: { sha256: payload.artifact.sha256, size: payload.artifact.size },
          });
          if (reference) {
            await storeReference(trx, {
              model: name,
              version,
              source: `dataset ${reference.fileName} (${reference.rows} rows)`,
              windows: 0,
              runs: reference.rows,
              features: reference.features,
              actor,
            });
          }
        });
        return reply.status(201).send({
          name,
          version,
          sha256: payload.artifact.sha256,
          size: payload.artifact.size,
          manifest,
          ...(reference ? { reference: { rows: reference.rows, features: reference.features.map((f) => f.name) } } : {}),
        });
      } finally {
        if (staged) await artifacts.discard(staged);
        if (goldenFile) await artifacts.discard(goldenFile);
      }
    },
  );

  app.get('/v1/models', { onRequest: context.requireRead, schema: { summary: 'List models' } }, async () => {
    const rows = await db
      .selectFrom('models')
      .leftJoin('model_versions', 'model_versions.name', 'models.name')
      .select(['models.name', 'models.created_at', db.fn.count<number>('model_versions.version').as('versions')])
      .groupBy(['models.name', 'models.created_at'])
      .orderBy('models.name')
      .execute();
    return { models: rows.map((r) => ({ name: r.name, createdAt: r.created_at, versions: Number(r.versions) })) };
  });

  app.get(
    '/v1/models/:name/versions',
    { onRequest: context.requireRead, schema: { summary: 'List the versions of a model', params: NameParams } },
    async (request) => {
      const name = assertModelName((request.params as { name: string }).name);
      const rows = await db.selectFrom('model_versions').selectAll().where('name', '=', name).orderBy('created_at').execute();
      if (rows.length === 0 && !(await db.selectFrom('models').select('name').where('name', '=', name).executeTakeFirst())) {
        throw new EdgefleetError('EF_NOT_FOUND', `there is no model "${name}"`);
      }
      return { versions: rows.map(summarizeRow) };
    },
  );

  app.get(
    '/v1/models/:name/versions/:version',
    { onRequest: context.requireRead, schema: { summary: 'A model version with its signed manifest', params: VersionParams } },
    async (request) => {
      const params = request.params as { name: string; version: string };
      const row = await findVersion(db, assertModelName(params.name), versionOf(params.version));
      return { ...summarizeRow(row), manifest: JSON.parse(row.manifest) as SignedDocument<ManifestPayload> };
    },
  );

  app.delete(
    '/v1/models/:name/versions/:version',
    { onRequest: context.requireAdmin, schema: { summary: 'Delete a version no alias or rollout uses', params: VersionParams } },
    async (request, reply) => {
      const params = request.params as { name: string; version: string };
      const name = assertModelName(params.name);
      const version = versionOf(params.version);
      await db.transaction().execute(async (trx) => {
        const row = await trx
          .selectFrom('model_versions')
          .selectAll()
          .where('name', '=', name)
          .where('version', '=', version)
          .executeTakeFirst();
        if (!row) throw new EdgefleetError('EF_NOT_FOUND', `${name}@${version} is not in the registry`);
        const aliases = await trx.selectFrom('aliases').select('alias').where('name', '=', name).where('version', '=', version).execute();
        if (aliases.length > 0) {
          throw new EdgefleetError('EF_MODEL_VERSION_IN_USE', `${name}@${version} is aliased as ${aliases.map((a) => a.alias).join(', ')}`);
        }
        const users = await versionUsers(trx, name, version);
        if (users.length > 0) {
          throw new EdgefleetError('EF_MODEL_VERSION_IN_USE', `${name}@${version} is in use: ${users.join('; ')}`, { details: { users } });
        }
        await trx
          .insertInto('deleted_versions')
          .values({
            name,
            version,
            sha256: row.sha256,
            deleted_at: new Date().toISOString(),
            deleted_by: request.principal?.id ?? 'unknown',
          })
          .onConflict((oc) => oc.columns(['name', 'version']).doUpdateSet({ deleted_at: new Date().toISOString() }))
          .execute();
        await trx.deleteFrom('version_artifacts').where('name', '=', name).where('version', '=', version).execute();
        await trx.deleteFrom('model_versions').where('name', '=', name).where('version', '=', version).execute();
        await audit(trx, {
          actor: request.principal?.id ?? 'unknown',
          action: 'model.version.delete',
          target: `model:${name}@${version}`,
          before: summarizeRow(row),
        });
      });
      await context.collectArtifacts();
      return reply.status(204).send();
    },
  );

  app.put(
    '/v1/models/:name/aliases/:alias',
    { onRequest: context.requireAdmin, schema: { summary: 'Point an alias at a version', params: AliasParams, body: AliasBody } },
    async (request) => {
      const params = request.params as { name: string; alias: string };
      const name = assertModelName(params.name);
      const version = versionOf((request.body as { version: string }).version);
      await findVersion(db, name, version);
      const updatedAt = new Date().toISOString();
      await db.transaction().execute(async (trx) => {
        const before = await trx
          .selectFrom('aliases')
          .select('version')
          .where('name', '=', name)
          .where('alias', '=', params.alias)
          .executeTakeFirst();
        await trx
          .insertInto('aliases')
          .values({ name, alias: params.alias, version, updated_at: updatedAt })
          .onConflict((oc) => oc.columns(['name', 'alias']).doUpdateSet({ version, updated_at: updatedAt }))
          .execute();
        await audit(trx, {
          actor: request.principal?.id ?? 'unknown',
          action: 'model.alias.set',
          target: `model:${name}#${params.alias}`,
          ...(before ? { before: { version: before.version } } : {}),
          after: { version },
        });
      });
      return { name, alias: params.alias, version, updatedAt };
    },
  );

  app.get(
    '/v1/models/:name/aliases',
    { onRequest: context.requireRead, schema: { summary: 'The aliases of a model', params: NameParams } },
    async (request) => {
      const name = assertModelName((request.params as { name: string }).name);
      const rows = await db.selectFrom('aliases').selectAll().where('name', '=', name).orderBy('alias').execute();
      return { aliases: rows.map((r) => ({ alias: r.alias, version: r.version, updatedAt: r.updated_at })) };
    },
  );
}
