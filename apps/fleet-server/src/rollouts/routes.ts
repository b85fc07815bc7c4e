/** The rollout API: create, watch, pause, resume, abort (rolls back), promote (skips the soak). */
import { EdgefleetError } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { datasetOf, requestEvaluation } from '../evaluation/jobs.ts';
import { judgeVersion, policyError } from '../evaluation/policy.ts';
import type { EvaluationTask } from '../evaluation/task.ts';
import { checkIfMatch, etagOf, setEtag } from '../http/etag.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Nullable, Page } from '../http/schemas.ts';
import { resolveVersion } from '../registry/versions.ts';
import type { RolloutDevicesTable, RolloutsTable } from '../store/schema.ts';
import type { RolloutEngine } from './engine.ts';
import { ROLLOUT_ORDER } from './repository.ts';
import { type RolloutSpec, RolloutSpecSchema } from './spec.ts';

const ListRollouts = pagedQuery({
  state: Type.Optional(Type.Enum(['running', 'paused', 'rolling_back', 'completed', 'rolled_back', 'aborted'])),
});
const ListMembers = pagedQuery({
  status: Type.Optional(Type.Enum(['pending', 'assigned', 'shadowing', 'active', 'failed', 'rolled_back'])),
  stage: Type.Optional(Type.String({ pattern: '^[0-9]{1,2}$' })),
});
const MEMBER_ORDER: readonly SortColumn[] = [
  { column: 'stage', direction: 'asc' },
  { column: 'device_id', direction: 'asc' },
];
const IdParams = Type.Object({ id: Type.String({ pattern: '^ro-[0-9a-f]{8}$' }) }, { additionalProperties: false });

const StageProgress = Type.Object(
  {
    stage: Type.Integer(),
    size: Type.Integer({ description: 'devices in this stage and the ones before it' }),
    shadow: Type.Boolean({ description: 'a shadow stage: its devices run the version in shadow, beside their own' }),
    active: Type.Integer(),
    shadowing: Type.Integer({ description: 'devices running the version in shadow' }),
    failed: Type.Integer(),
    pending: Type.Integer(),
    offline: Type.Integer({ description: 'pending devices that are offline' }),
  },
  { additionalProperties: false },
);
const ShadowReadingsSchema = Type.Object(
  {
    devices: Type.Integer({ description: 'devices that ran the candidate in shadow' }),
    runs: Type.Integer({ description: 'live inputs the candidate also ran and was compared on' }),
    skipped: Type.Integer({ description: 'inputs sampled but not run (device busy, or over the time budget)' }),
    errors: Type.Integer({ description: 'shadow runs that failed where the live version answered' }),
    errorRate: Nullable(Type.Number()),
    rows: Type.Integer({ description: 'rows of class scores compared' }),
    agreement: Nullable(
      Type.Number({
        description: 'share of rows where both picked the same class: the lower of the pooled share and the median over devices',
      }),
    ),
    pooledAgreement: Nullable(Type.Number({ description: 'agreed rows over rows compared, over every device' })),
    medianDeviceAgreement: Nullable(Type.Number({ description: 'the median of each device’s own share' })),
    topKOverlap: Nullable(Type.Number({ description: 'mean top-3 overlap' })),
    maxAbsDiff: Nullable(Type.Number()),
    meanAbsDiff: Nullable(Type.Number()),
    latencyRatio: Nullable(
      Type.Object(
        { p50: Type.Number(), p95: Type.Number() },
        { additionalProperties: false, description: 'candidate latency over the live version’s, per compared input' },
      ),
    ),
    worstDevice: Nullable(
      Type.Object({ id: Type.String(), agreement: Type.Number(), rows: Type.Integer() }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false, description: 'a shadow stage: what the candidate’s comparisons add up to so far' },
);
const GateReadingsSchema = Type.Object(
  {
    stage: Type.Integer({ description: 'the stage they were measured for' }),
    measuredAt: DateTime,
    gates: Type.Array(
      Type.Object(
        {
          name: Type.Enum([
            'failure_rate',
            'devices_reporting',
            'latency_ratio',
            'drift_score',
            'output_shift',
            'shadow_runs',
            'shadow_error_rate',
            'shadow_agreement',
            'shadow_latency_ratio',
          ]),
          value: Nullable(Type.Number({ description: 'null until it can be measured' })),
          threshold: Type.Number(),
          bound: Type.Enum(['max', 'min'], { description: 'max: passes at or under the threshold; min: at or over it' }),
        },
        { additionalProperties: false },
      ),
    ),
    shadow: Type.Optional(ShadowReadingsSchema),
  },
  {
    additionalProperties: false,
    description: 'the current stage’s gates as the engine last measured them, against their thresholds (null before the first measurement)',
  },
);
const RolloutState = Type.Enum(['running', 'paused', 'rolling_back', 'completed', 'rolled_back', 'aborted']);
const MemberStatus = Type.Enum(['pending', 'assigned', 'shadowing', 'active', 'failed', 'rolled_back']);
const RolloutSummary = {
  id: Type.String(),
  model: Type.String(),
  version: Type.String({ description: 'the version installed (an alias given at creation is resolved then)' }),
  versionAlias: Nullable(Type.String({ description: 'the alias the version was given as, if any' })),
  state: RolloutState,
  currentStage: Type.Integer(),
  stageStartedAt: DateTime,
  spec: RolloutSpecSchema,
  reason: Type.Unknown({ description: 'why it paused or rolled back: the gate and its numbers (null when running)' }),
  stages: Type.Array(StageProgress),
  gates: Nullable(GateReadingsSchema),
  createdAt: DateTime,
  createdBy: Type.String(),
};
const RolloutSummaryView = Type.Object(RolloutSummary, { additionalProperties: false });
const RolloutView = Type.Object(
  {
    ...RolloutSummary,
    devices: Type.Array(
      Type.Object(
        {
          id: Type.String(),
          stage: Type.Integer(),
          status: MemberStatus,
          previousVersion: Nullable(Type.String()),
          errorCode: Nullable(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
const Member = Type.Object(
  {
    id: Type.String(),
    stage: Type.Integer(),
    status: MemberStatus,
    previousVersion: Nullable(Type.String()),
    errorCode: Nullable(Type.String()),
    latencyRatio: Nullable(Type.Number()),
  },
  { additionalProperties: false },
);

const ACTION_SUMMARIES = {
  pause: 'Pause a running rollout (a paused one answers its state)',
  resume: 'Resume a paused rollout; its failed devices get another chance (a running one answers its state)',
  abort: 'Abort a rollout: its devices return to their previous version (state aborted)',
  promote: 'Skip the rest of the current stage’s soak',
  rollback: 'Roll a running or paused rollout back: its devices return to their previous version (state rolled_back)',
} as const;

/** What an admin acts on: its state and stage. */
function rolloutEtag(rollout: { readonly state: string; readonly currentStage: number }): string {
  return etagOf({ state: rollout.state, stage: rollout.currentStage });
}

export async function registerRolloutRoutes(app: FastifyInstance, context: ServerContext, engine: RolloutEngine): Promise<void> {
  app.post(
    '/v1/rollouts',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Start a staged rollout of a model version (or of the version an alias names now); honours Idempotency-Key',
        body: RolloutSpecSchema,
        response: { 201: RolloutView },
      },
    },
    async (request, reply) => {
      const spec = request.body as RolloutSpec;
      const { version, alias } = await resolveVersion(context.db, spec.model, spec.version);
      const actor = request.principal?.id ?? 'unknown';
      // The model's promotion policy (evaluation/policy.ts): a rollback returns to a known version and is not judged.
      const verdict = spec.rollback
        ? undefined
        : await judgeVersion(context.db, spec.model, version, async (champion, like) => {
            const task = JSON.parse(like.task) as EvaluationTask;
            return (
              await requestEvaluation(context, { model: spec.model, version: champion, dataset: datasetOf(like), task, actor }, false)
            ).row;
          });
      if (verdict && verdict.failures.length > 0 && !spec.policyOverride) throw policyError(spec.model, version, verdict);
      const rollout = await engine.create({ ...spec, version }, actor, { alias });
      if (verdict && verdict.failures.length > 0 && spec.policyOverride) {
        await audit(context.db, {
          actor,
          action: 'rollout.policy-override',
          target: `rollout:${rollout.id}`,
          after: {
            model: spec.model,
            version,
            reason: spec.policyOverride.reason,
            evaluations: verdict.evaluations,
            failures: verdict.failures,
          },
        });
      }
      return reply.status(201).header('location', `/v1/rollouts/${rollout.id}`).send(rollout);
    },
  );
  app.get(
    '/v1/rollouts',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'Rollouts, newest first, without their members (GET /v1/rollouts/{id}/members pages them)',
        querystring: ListRollouts,
        response: { 200: Page('rollouts', RolloutSummaryView) },
      },
    },
    async (request) => {
      const query = request.query as { state?: RolloutsTable['state']; limit?: string; cursor?: string };
      const page = pageRequest('rollouts', query, ROLLOUT_ORDER.length, 20);
      const rows = await engine.list({ ...(query.state ? { state: query.state } : {}), page });
      const { items, next } = pageOf(rows, page, (r) => [r.createdAt, r.id]);
      return { rollouts: items, next };
    },
  );
  app.get(
    '/v1/rollouts/:id',
    {
      onRequest: context.requireRead,
      schema: { summary: 'A rollout: stages and per-device state, with its ETag', params: IdParams, response: { 200: RolloutView } },
    },
    async (request, reply) => {
      const rollout = await engine.get((request.params as { id: string }).id);
      setEtag(reply, rolloutEtag(rollout));
      return rollout;
    },
  );
  app.get(
    '/v1/rollouts/:id/members',
    {
      onRequest: context.requireRead,
      schema: {
        summary: "A rollout's devices, by stage then device id, a page at a time, with their status and error code",
        params: IdParams,
        querystring: ListMembers,
        response: { 200: Page('members', Member) },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const query = request.query as { status?: RolloutDevicesTable['status']; stage?: string; limit?: string; cursor?: string };
      const page = pageRequest(`rollout-members:${id}`, query, MEMBER_ORDER.length);
      if (!(await context.db.selectFrom('rollouts').select('id').where('id', '=', id).executeTakeFirst())) {
        throw new EdgefleetError('EF_NOT_FOUND', `no rollout "${id}"`);
      }
      await context.writes.flush();
      let select = keysetPage(
        context.db
          .selectFrom('rollout_devices')
          .select(['device_id', 'stage', 'status', 'previous_version', 'error_code', 'latency_ratio'])
          .where('rollout_id', '=', id),
        MEMBER_ORDER,
        page,
      );
      if (query.status) select = select.where('status', '=', query.status);
      if (query.stage !== undefined) select = select.where('stage', '=', Number(query.stage));
      const { items, next } = pageOf(await select.execute(), page, (m) => [m.stage, m.device_id]);
      return {
        members: items.map((m) => ({
          id: m.device_id,
          stage: m.stage,
          status: m.status,
          previousVersion: m.previous_version,
          errorCode: m.error_code,
          latencyRatio: m.latency_ratio,
        })),
        next,
      };
    },
  );
  for (const action of ['pause', 'resume', 'abort', 'promote', 'rollback'] as const) {
    app.post(
      `/v1/rollouts/:id/${action}`,
      {
        onRequest: context.requireAdmin,
        schema: { summary: ACTION_SUMMARIES[action], params: IdParams, response: { 200: RolloutView } },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        // If-Match: the action applies only to the rollout as the client last saw it (state and stage).
        if (request.headers['if-match'] !== undefined) checkIfMatch(request, rolloutEtag(await engine.get(id)), `rollout ${id}`);
        const rollout = await engine[action](id, request.principal?.id ?? 'unknown');
        setEtag(reply, rolloutEtag(rollout));
        return rollout;
      },
    );
  }
}
