import { assertModelName, EdgefleetError, type ManifestPayload, type SignedDocument } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { METRIC_NAMES, metricValue, type TaskMetrics } from '../evaluation/metrics.ts';
import { checkIfMatch, etagOf, setEtag } from '../http/etag.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Empty, Nullable, Page, Ref } from '../http/schemas.ts';
import type { Database, ModelVersionsTable } from '../store/schema.ts';
import { registerUploadRoute } from './upload.ts';
import type { VariantReport } from './variants.ts';
import { findVersion, versionOf, versionUsers } from './versions.ts';

const ListModels = pagedQuery({});
const ListVersions = pagedQuery({});
const MODEL_ORDER: readonly SortColumn[] = [{ column: 'models.name', direction: 'asc' }];
const VERSION_ORDER: readonly SortColumn[] = [
  { column: 'created_at', direction: 'asc' },
  { column: 'version', direction: 'asc' },
];
const NameParams = Type.Object({ name: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const VersionParams = Type.Object(
  { name: Type.String({ maxLength: 64 }), version: Type.String({ maxLength: 64 }) },
  { additionalProperties: false },
);
const AliasParams = Type.Object(
  { name: Type.String({ maxLength: 64 }), alias: Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }) },
  { additionalProperties: false },
);
const ListAliases = pagedQuery({});
const ALIAS_ORDER: readonly SortColumn[] = [{ column: 'alias', direction: 'asc' }];
const ModelView = Type.Object(
  { name: Type.String(), createdAt: DateTime, versions: Type.Integer({ description: 'how many versions it has' }) },
  { additionalProperties: false },
);
const VersionSummary = Type.Object(
  {
    name: Type.String(),
    version: Type.String(),
    sha256: Type.String(),
    size: Type.Integer(),
    createdAt: DateTime,
    createdBy: Type.String(),
    metadata: Type.Record(Type.String(), Type.String()),
  },
  { additionalProperties: false },
);
const VersionDetail = Type.Object(
  {
    ...VersionSummary.properties,
    manifest: Ref('SignedManifest'),
    evaluation: Nullable(
      Type.Object(
        {
          id: Type.String(),
          dataset: Type.String({ description: 'the dataset’s file name' }),
          datasetSha256: Type.String(),
          task: Type.String(),
          finishedAt: DateTime,
          metrics: Type.Record(Type.String(), Type.Unknown(), { description: 'as GET /v1/evaluations/{id} has them' }),
        },
        {
          additionalProperties: false,
          description: 'the version’s latest successful evaluation on labelled data (GET …/evaluations lists them all); null when none',
        },
      ),
    ),
    variants: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          precision: Type.String(),
          size: Type.Integer(),
          sizeRatio: Type.Number({ description: 'its size over the reference’s' }),
          executionProviders: Type.Array(Type.String()),
          tolerance: Type.Object({ absolute: Type.Number(), relative: Type.Number() }, { additionalProperties: false }),
          maxAbsoluteError: Nullable(Type.Number({ description: 'its largest difference from the reference on the golden inputs' })),
          source: Type.Enum(['uploaded', 'quantized']),
          evaluation: Nullable(
            Type.Object(
              {
                id: Type.String(),
                metrics: Type.Record(Type.String(), Type.Unknown()),
                delta: Type.Record(Type.String(), Type.Number(), {
                  description: 'each metric minus the reference’s on the same dataset and task (absent until the reference is evaluated)',
                }),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
      { description: 'the other builds of the model the manifest lists, as registration measured them' },
    ),
  },
  { additionalProperties: false },
);
const AliasView = Type.Object(
  { name: Type.String(), alias: Type.String(), version: Type.String(), updatedAt: DateTime },
  { additionalProperties: false },
);
const AliasBody = Type.Object({ version: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

function aliasEtag(version: string): string {
  return etagOf({ version });
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

/** A version's variants: the manifest's entries, what registration measured, their latest evaluation against the reference's. */
async function variantsView(db: Kysely<Database>, row: ModelVersionsTable) {
  const manifest = (JSON.parse(row.manifest) as SignedDocument<ManifestPayload>).payload;
  if (!manifest.variants?.length) return [];
  const reports = JSON.parse(row.variants ?? '[]') as VariantReport[];
  const evaluations = await db
    .selectFrom('evaluations')
    .selectAll()
    .where('model', '=', row.name)
    .where('version', '=', row.version)
    .where('status', '=', 'succeeded')
    .orderBy('finished_at', 'desc')
    .orderBy('id', 'desc')
    .limit(500)
    .execute();
  return manifest.variants.map((variant) => {
    const report = reports.find((r) => r.name === variant.name);
    const evaluated = evaluations.find((e) => e.variant === variant.name);
    const reference = evaluated
      ? evaluations.find(
          (e) => e.variant === null && e.dataset_sha256 === evaluated.dataset_sha256 && evaluated.task_key.startsWith(`${e.task_key}#`),
        )
      : undefined;
    const metrics = evaluated ? (JSON.parse(evaluated.metrics ?? '{}') as TaskMetrics) : undefined;
    const base = reference ? (JSON.parse(reference.metrics ?? '{}') as TaskMetrics) : undefined;
    const delta: Record<string, number> = {};
    for (const name of METRIC_NAMES) {
      const [ours, theirs] = [metrics && metricValue(metrics, name), base && metricValue(base, name)];
      if (ours !== undefined && theirs !== undefined) delta[name] = ours - theirs;
    }
    return {
      name: variant.name,
      precision: variant.precision,
      size: variant.size,
      sizeRatio: report?.sizeRatio ?? Math.round((variant.size / manifest.artifact.size) * 10_000) / 10_000,
      executionProviders: variant.executionProviders,
      tolerance: variant.tolerance,
      maxAbsoluteError: report?.maxAbsoluteError ?? null,
      source: report?.source ?? 'uploaded',
      evaluation: evaluated ? { id: evaluated.id, metrics: metrics as unknown as Record<string, unknown>, delta } : null,
    };
  });
}

export async function registerRegistryRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  const { db } = context;

  await registerUploadRoute(app, context);

  app.get(
    '/v1/models',
    {
      onRequest: context.requireRead,
      schema: { summary: 'List models by name', querystring: ListModels, response: { 200: Page('models', ModelView) } },
    },
    async (request) => {
      const query = request.query as { limit?: string; cursor?: string };
      const page = pageRequest('models', query, MODEL_ORDER.length);
      const select = keysetPage(
        db
          .selectFrom('models')
          .leftJoin('model_versions', 'model_versions.name', 'models.name')
          .select(['models.name', 'models.created_at', db.fn.count<number>('model_versions.version').as('versions')])
          .groupBy(['models.name', 'models.created_at']),
        MODEL_ORDER,
        page,
      );
      const { items, next } = pageOf(await select.execute(), page, (r) => [r.name]);
      return { models: items.map((r) => ({ name: r.name, createdAt: r.created_at, versions: Number(r.versions) })), next };
    },
  );

  app.get(
    '/v1/models/:name/versions',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'List the versions of a model, oldest first',
        params: NameParams,
        querystring: ListVersions,
        response: { 200: Page('versions', VersionSummary) },
      },
    },
    async (request) => {
      const name = assertModelName((request.params as { name: string }).name);
      const query = request.query as { limit?: string; cursor?: string };
      const page = pageRequest(`versions:${name}`, query, VERSION_ORDER.length);
      const rows = await keysetPage(db.selectFrom('model_versions').selectAll().where('name', '=', name), VERSION_ORDER, page).execute();
      if (rows.length === 0 && !(await db.selectFrom('models').select('name').where('name', '=', name).executeTakeFirst())) {
        throw new EdgefleetError('EF_NOT_FOUND', `there is no model "${name}"`);
      }
      const { items, next } = pageOf(rows, page, (r) => [r.created_at, r.version]);
      return { versions: items.map(summarizeRow), next };
    },
  );

  app.get(
    '/v1/models/:name/versions/:version',
    {
      onRequest: context.requireRead,
      schema: { summary: 'A model version with its signed manifest', params: VersionParams, response: { 200: VersionDetail } },
    },
    async (request) => {
      const params = request.params as { name: string; version: string };
      const row = await findVersion(db, assertModelName(params.name), versionOf(params.version));
      const evaluated = await db
        .selectFrom('evaluations')
        .selectAll()
        .where('model', '=', row.name)
        .where('version', '=', row.version)
        .where('status', '=', 'succeeded')
        .where('variant', 'is', null)
        .orderBy('finished_at', 'desc')
        .orderBy('id', 'desc')
        .limit(1)
        .executeTakeFirst();
      return {
        ...summarizeRow(row),
        manifest: JSON.parse(row.manifest) as SignedDocument<ManifestPayload>,
        evaluation: evaluated
          ? {
              id: evaluated.id,
              dataset: evaluated.dataset_name,
              datasetSha256: evaluated.dataset_sha256,
              task: (JSON.parse(evaluated.task) as { kind: string }).kind,
              finishedAt: evaluated.finished_at as string,
              metrics: JSON.parse(evaluated.metrics ?? '{}') as Record<string, unknown>,
            }
          : null,
        variants: await variantsView(db, row),
      };
    },
  );

  app.delete(
    '/v1/models/:name/versions/:version',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Delete a version no alias, rollout or device uses (its number stays bound to its bytes)',
        params: VersionParams,
        response: { 204: { description: 'deleted', ...Empty } },
      },
    },
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
        // Its evaluations go with it (their datasets stay while another evaluation uses them).
        await trx.deleteFrom('evaluations').where('model', '=', name).where('version', '=', version).execute();
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
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Point an alias at a version (honours If-Match)',
        params: AliasParams,
        body: AliasBody,
        response: { 200: AliasView },
      },
    },
    async (request, reply) => {
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
        if (request.headers['if-match'] !== undefined) {
          if (!before)
            throw new EdgefleetError('EF_PRECONDITION_FAILED', `${name} has no alias "${params.alias}" yet, and If-Match asks for one`);
          checkIfMatch(request, aliasEtag(before.version), `alias ${name}#${params.alias}`);
        }
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
      setEtag(reply, aliasEtag(version));
      return { name, alias: params.alias, version, updatedAt };
    },
  );

  app.get(
    '/v1/models/:name/aliases/:alias',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'One alias of a model and the version it names, with its ETag',
        params: AliasParams,
        response: { 200: AliasView },
      },
    },
    async (request, reply) => {
      const params = request.params as { name: string; alias: string };
      const name = assertModelName(params.name);
      const row = await db.selectFrom('aliases').selectAll().where('name', '=', name).where('alias', '=', params.alias).executeTakeFirst();
      if (!row)
        throw new EdgefleetError('EF_NOT_FOUND', `${name} has no alias "${params.alias}"; GET /v1/models/${name}/aliases lists them`);
      setEtag(reply, aliasEtag(row.version));
      return { name, alias: row.alias, version: row.version, updatedAt: row.updated_at };
    },
  );

  app.get(
    '/v1/models/:name/aliases',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'The aliases of a model, by name',
        params: NameParams,
        querystring: ListAliases,
        response: { 200: Page('aliases', AliasView) },
      },
    },
    async (request) => {
      const name = assertModelName((request.params as { name: string }).name);
      const query = request.query as { limit?: string; cursor?: string };
      const page = pageRequest(`aliases:${name}`, query, ALIAS_ORDER.length);
      const rows = await keysetPage(db.selectFrom('aliases').selectAll().where('name', '=', name), ALIAS_ORDER, page).execute();
      const { items, next } = pageOf(rows, page, (r) => [r.alias]);
      return { aliases: items.map((r) => ({ name, alias: r.alias, version: r.version, updatedAt: r.updated_at })), next };
    },
  );
}
