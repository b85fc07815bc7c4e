/**
 * The evaluation API: evaluate a version on a labelled dataset (a job with progress), read the
 * results, and set each model's promotion policy (evaluation/policy.ts).
 */
import { assertModelName, EdgefleetError, ModelName, parseJson, REFERENCE_VARIANT, type TensorSpec, validate } from '@edgefleet/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { partsFingerprint } from '../http/idempotency.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Nullable, Page } from '../http/schemas.ts';
import { findVersion, versionOf } from '../registry/versions.ts';
import type { EvaluationsTable } from '../store/schema.ts';
import { checkDataset, datasetOf, EvaluationView, evaluationView, requestEvaluation, stageDataset } from './jobs.ts';
import { judgeVersion, PromotionPolicySchema } from './policy.ts';
import type { EvaluationRunner } from './runner.ts';
import { EvaluationTaskSchema } from './task.ts';

const VersionParams = Type.Object({ name: ModelName, version: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const NameParams = Type.Object({ name: ModelName }, { additionalProperties: false });
const IdParams = Type.Object({ id: Type.String({ pattern: '^ev-[0-9a-f]{8}$' }) }, { additionalProperties: false });
const ListEvaluations = pagedQuery({ status: Type.Optional(Type.Enum(['queued', 'running', 'succeeded', 'failed'])) });
const ORDER: readonly SortColumn[] = [
  { column: 'created_at', direction: 'desc' },
  { column: 'id', direction: 'desc' },
];

const PolicyView = Type.Object(
  {
    model: Type.String(),
    policy: Nullable(PromotionPolicySchema),
    updatedAt: Nullable(DateTime),
    updatedBy: Nullable(Type.String()),
  },
  { additionalProperties: false },
);

const VerdictView = Type.Object(
  {
    model: Type.String(),
    version: Type.String(),
    passes: Type.Boolean(),
    evaluations: Type.Array(Type.String(), { description: 'the evaluations the verdict read' }),
    champion: Nullable(
      Type.Object(
        { version: Type.String(), evaluations: Type.Array(Type.String()) },
        {
          additionalProperties: false,
          description: 'the version it replaces (that of the model’s last completed rollout), and its evaluations compared with',
        },
      ),
    ),
    failures: Type.Array(
      Type.Object(
        {
          metric: Type.String(),
          kind: Type.Enum(['minimum', 'maximum', 'regression', 'missing']),
          value: Nullable(Type.Number()),
          threshold: Nullable(Type.Number()),
          champion: Type.Optional(Type.Object({ version: Type.String(), value: Type.Number() }, { additionalProperties: false })),
          message: Type.String(),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const EVALUATE_DOC_BODY = {
  content: {
    'multipart/form-data': {
      schema: Type.Object(
        {
          dataset: Type.String({
            contentMediaType: 'application/octet-stream',
            description:
              'labelled held-out data: CSV with a header row (.csv) or JSON lines (.jsonl), one sample per row, or an .npz (np.savez) with one array per model input and a "label" array',
          }),
          task: EvaluationTaskSchema,
          variant: Type.Optional(
            Type.String({
              description:
                'the variant to evaluate (default "reference", the manifest’s artifact; evaluating it evaluates every variant too)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
      encoding: { dataset: { contentType: 'text/csv, application/x-ndjson, application/octet-stream' } },
    },
  },
};

export async function registerEvaluationRoutes(
  app: FastifyInstance,
  context: ServerContext & { readonly evaluations: EvaluationRunner },
): Promise<void> {
  const { db, artifacts } = context;

  async function readEvaluateBody(request: FastifyRequest) {
    let dataset: Awaited<ReturnType<typeof stageDataset>> | undefined;
    let task: unknown;
    let taskText: string | undefined;
    let variant: string | undefined;
    try {
      for await (const part of request.parts()) {
        if (part.type === 'file' && part.fieldname === 'dataset' && !dataset) {
          dataset = await stageDataset(context, part.file, part.filename, part.mimetype);
        } else if (part.type === 'file' && part.fieldname === 'task') {
          const chunks: Buffer[] = [];
          for await (const chunk of part.file) chunks.push(chunk as Buffer);
          taskText = Buffer.concat(chunks).toString('utf8');
          task = parseJson(taskText, { maxBytes: 1024 * 1024 });
        } else if (part.type === 'field' && part.fieldname === 'task') {
          taskText = String(part.value);
          task = parseJson(taskText, { maxBytes: 1024 * 1024 });
        } else if (part.type === 'field' && part.fieldname === 'variant') {
          variant = String(part.value).slice(0, 64);
        } else {
          if (part.type === 'file') part.file.resume();
          throw new EdgefleetError(
            'EF_SCHEMA_INVALID',
            `an evaluation takes a file "dataset", a field "task" and optionally a field "variant" (got "${part.fieldname.slice(0, 64)}")`,
          );
        }
      }
      if (!dataset) throw new EdgefleetError('EF_SCHEMA_INVALID', 'the evaluation needs its labelled dataset as the file part "dataset"');
      if (task === undefined) {
        throw new EdgefleetError(
          'EF_SCHEMA_INVALID',
          'the evaluation needs a "task" field, e.g. {"kind":"classification"} (see docs/quality.md)',
        );
      }
      request.idempotencyFingerprint = partsFingerprint(
        request.method,
        request.url.split('?')[0] ?? request.url,
        { task: taskText ?? '', ...(variant !== undefined ? { variant } : {}) },
        {
          dataset: dataset.staged.sha256,
        },
      );
      return { dataset, task: validate(EvaluationTaskSchema, task), ...(variant !== undefined ? { variant } : {}) };
    } catch (error) {
      if (dataset) await artifacts.discard(dataset.staged);
      throw error;
    }
  }

  app.post(
    '/v1/models/:name/versions/:version/evaluations',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary:
          'Evaluate a version on a labelled held-out dataset (multipart: "dataset" file, "task" field): a job; the same dataset and task answer the existing evaluation; honours Idempotency-Key',
        params: VersionParams,
        consumes: ['multipart/form-data'],
        response: { 200: EvaluationView, 202: EvaluationView },
      },
      config: { docBody: EVALUATE_DOC_BODY },
    },
    async (request, reply) => {
      const { name, version } = request.params as { name: string; version: string };
      assertModelName(name);
      const row = await findVersion(db, name, versionOf(version));
      const { dataset, task, variant } = await readEvaluateBody(request);
      try {
        const manifest = JSON.parse(row.manifest) as {
          payload: { model: { inputs: TensorSpec[]; outputs: TensorSpec[] }; variants?: { name: string }[] };
        };
        if (variant !== undefined && variant !== REFERENCE_VARIANT && !manifest.payload.variants?.some((v) => v.name === variant)) {
          throw new EdgefleetError(
            'EF_NOT_FOUND',
            `${name}@${version} has no variant "${variant}"; it has ${['reference', ...(manifest.payload.variants ?? []).map((v) => v.name)].join(', ')}`,
          );
        }
        await checkDataset(dataset.staged.path, dataset.format, task, manifest.payload.model, context.config.maxEvaluationBytes);
        await artifacts.commit(dataset.staged);
      } catch (error) {
        await artifacts.discard(dataset.staged);
        throw error;
      }
      const actor = request.principal?.id ?? 'unknown';
      const result = await requestEvaluation(context, {
        model: name,
        version,
        dataset: { sha256: dataset.staged.sha256, size: dataset.staged.size, format: dataset.format, name: dataset.name },
        task,
        actor,
        ...(variant !== undefined ? { variant } : {}),
      });
      if (result.created) {
        await audit(db, {
          actor,
          action: 'model.version.evaluate',
          target: `model:${name}@${version}`,
          after: { evaluation: result.row.id, dataset: dataset.staged.sha256 },
        });
      }
      return reply
        .status(result.created ? 202 : 200)
        .header('location', `/v1/evaluations/${result.row.id}`)
        .send(evaluationView(result.row));
    },
  );

  app.get(
    '/v1/models/:name/versions/:version/evaluations',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'List a version’s evaluations, newest first (paged)',
        params: VersionParams,
        querystring: ListEvaluations,
        response: { 200: Page('evaluations', EvaluationView) },
      },
    },
    async (request) => {
      const { name, version } = request.params as { name: string; version: string };
      await findVersion(db, assertModelName(name), versionOf(version));
      const query = request.query as { status?: EvaluationsTable['status']; limit?: string; cursor?: string };
      const page = pageRequest(`evaluations:${name}@${version}`, query, ORDER.length, 20);
      let select = db.selectFrom('evaluations').selectAll().where('model', '=', name).where('version', '=', version);
      if (query.status) select = select.where('status', '=', query.status);
      const rows = await keysetPage(select, ORDER, page).execute();
      const { items, next } = pageOf(rows, page, (r) => [r.created_at, r.id]);
      return { evaluations: items.map(evaluationView), next };
    },
  );

  app.get(
    '/v1/evaluations/:id',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'One evaluation: its progress, then its metrics or its error',
        params: IdParams,
        response: { 200: EvaluationView },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const row = await db.selectFrom('evaluations').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) throw new EdgefleetError('EF_NOT_FOUND', `evaluation ${id} does not exist`);
      return evaluationView(row);
    },
  );

  app.get(
    '/v1/models/:name/policy',
    {
      onRequest: context.requireRead,
      schema: { summary: 'A model’s promotion policy (null when it has none)', params: NameParams, response: { 200: PolicyView } },
    },
    async (request) => {
      const name = assertModelName((request.params as { name: string }).name);
      const row = await db.selectFrom('model_policies').selectAll().where('model', '=', name).executeTakeFirst();
      return {
        model: name,
        policy: row ? JSON.parse(row.policy) : null,
        updatedAt: row?.updated_at ?? null,
        updatedBy: row?.updated_by ?? null,
      };
    },
  );

  app.put(
    '/v1/models/:name/policy',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Set a model’s promotion policy: minimum metrics and the most a version may regress against the one it replaces',
        params: NameParams,
        body: PromotionPolicySchema,
        response: { 200: PolicyView },
      },
    },
    async (request) => {
      const name = assertModelName((request.params as { name: string }).name);
      const model = await db.selectFrom('models').select('name').where('name', '=', name).executeTakeFirst();
      if (!model) throw new EdgefleetError('EF_NOT_FOUND', `model ${name} is not in the registry`);
      const policy = request.body as object;
      const actor = request.principal?.id ?? 'unknown';
      const at = new Date().toISOString();
      await db.transaction().execute(async (trx) => {
        const before = await trx.selectFrom('model_policies').select('policy').where('model', '=', name).executeTakeFirst();
        await trx
          .insertInto('model_policies')
          .values({ model: name, policy: JSON.stringify(policy), updated_at: at, updated_by: actor })
          .onConflict((conflict) =>
            conflict.column('model').doUpdateSet({ policy: JSON.stringify(policy), updated_at: at, updated_by: actor }),
          )
          .execute();
        await audit(trx, {
          actor,
          action: 'model.policy.set',
          target: `model:${name}`,
          before: before ? JSON.parse(before.policy) : null,
          after: policy,
        });
      });
      return { model: name, policy, updatedAt: at, updatedBy: actor };
    },
  );

  app.delete(
    '/v1/models/:name/policy',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'Remove a model’s promotion policy', params: NameParams, response: { 204: Type.Null() } },
    },
    async (request, reply) => {
      const name = assertModelName((request.params as { name: string }).name);
      const actor = request.principal?.id ?? 'unknown';
      await db.transaction().execute(async (trx) => {
        const before = await trx.selectFrom('model_policies').select('policy').where('model', '=', name).executeTakeFirst();
        if (!before) return;
        await trx.deleteFrom('model_policies').where('model', '=', name).execute();
        await audit(trx, { actor, action: 'model.policy.delete', target: `model:${name}`, before: JSON.parse(before.policy) });
      });
      return reply.status(204).send();
    },
  );

  app.get(
    '/v1/models/:name/versions/:version/verdict',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'How a version fares against its model’s promotion policy now (what rollout creation would say)',
        params: VersionParams,
        response: { 200: VerdictView },
      },
    },
    async (request) => {
      const { name, version } = request.params as { name: string; version: string };
      await findVersion(db, assertModelName(name), versionOf(version));
      const verdict = await judgeVersion(
        db,
        name,
        version,
        async (champion, like) =>
          (
            await requestEvaluation(
              context,
              { model: name, version: champion, dataset: datasetOf(like), task: JSON.parse(like.task), actor: 'policy' },
              false,
            )
          ).row,
      );
      return {
        model: name,
        version,
        passes: verdict.failures.length === 0,
        evaluations: [...verdict.evaluations],
        champion: verdict.champion ? { version: verdict.champion.version, evaluations: [...verdict.champion.evaluations] } : null,
        failures: verdict.failures,
      };
    },
  );
}
