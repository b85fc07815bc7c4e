/**
 * The drift API: the stored drift series per version, device group and bucket, alerts with their
 * webhook deliveries, a version's drift status, an evaluation on demand, and drift computed ad hoc
 * for any bucket width.
 */
import type { DriftResult } from '@edgefleet/drift';
import { EdgefleetError, ModelName, Semver, Tag, Timestamp } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import type { Selectable } from 'kysely';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Next, Nullable, Page } from '../http/schemas.ts';
import { iso } from '../http/time.ts';
import { findVersion } from '../registry/versions.ts';
import type { DriftScoresTable } from '../store/schema.ts';
import { featureDistribution } from './distribution.ts';
import type { DriftEvaluator } from './evaluator.ts';
import { ALL_DEVICES } from './evaluator.ts';
import { evaluateDrift, latestScores } from './scoring.ts';

const VersionParams = Type.Object({ name: ModelName, version: Semver }, { additionalProperties: false });

const DriftQuery = pagedQuery({
  model: ModelName,
  version: Semver,
  tag: Type.Optional(Tag),
  since: Type.Optional(Timestamp),
  bucketSeconds: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })),
});

/** A device group: a tag, or * for every device. */
const Group = Type.Union([Tag, Type.Literal('*')], { description: 'a device tag, or * for every device' });

const ScoresQuery = pagedQuery({
  model: ModelName,
  version: Semver,
  group: Type.Optional(Group),
  since: Type.Optional(Timestamp),
});
const SCORE_ORDER: readonly SortColumn[] = [
  { column: 'bucket_start', direction: 'asc' },
  { column: 'group_tag', direction: 'asc' },
];

const AlertsQuery = pagedQuery({
  model: Type.Optional(ModelName),
  version: Type.Optional(Semver),
  state: Type.Optional(Type.Enum(['firing', 'resolved'])),
});
const ALERT_ORDER: readonly SortColumn[] = [
  { column: 'opened_at', direction: 'desc' },
  { column: 'id', direction: 'desc' },
];

const DriftResultView = Type.Object(
  {
    method: Type.String({ description: 'ks, chi-square, wasserstein, jensen-shannon or psi' }),
    score: Type.Number({ description: 'a p-value (ks, chi-square) or a distance' }),
    threshold: Type.Number(),
    drifted: Type.Boolean(),
    statistic: Type.Optional(Type.Number()),
  },
  { additionalProperties: false },
);
const ScoreView = Type.Object(
  {
    group: Type.String({ description: 'a device tag, or * for every device' }),
    bucketStart: DateTime,
    bucketEnd: DateTime,
    devices: Type.Integer(),
    windows: Type.Integer(),
    runs: Type.Integer(),
    compared: Type.Integer({ description: 'features compared' }),
    score: Type.Number({ description: 'share of compared features that drifted, 0-1' }),
    drifted: Type.Boolean(),
    driftedFeatures: Type.Array(Type.String()),
    features: Type.Record(Type.String(), DriftResultView),
    evaluatedAt: DateTime,
  },
  { additionalProperties: false },
);
const AlertView = Type.Object(
  {
    id: Type.String(),
    model: Type.String(),
    version: Type.String(),
    group: Type.String(),
    state: Type.Enum(['firing', 'resolved']),
    openedAt: DateTime,
    resolvedAt: Nullable(DateTime),
    firstBucket: DateTime,
    lastBucket: DateTime,
    score: Type.Number(),
    features: Type.Array(Type.String()),
    deliveries: Type.Array(
      Type.Object(
        {
          id: Type.String(),
          event: Type.String(),
          createdAt: DateTime,
          attempts: Type.Integer(),
          deliveredAt: Nullable(DateTime),
          responseStatus: Nullable(Type.Integer()),
          lastError: Nullable(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
const DriftStatus = Type.Object(
  {
    model: Type.String(),
    version: Type.String(),
    status: Type.Enum(['no-reference', 'no-data', 'ok', 'warning', 'drifting']),
    reference: Nullable(Type.Object({ source: Type.String(), runs: Type.Integer(), createdAt: DateTime }, { additionalProperties: false })),
    groups: Type.Array(
      Type.Object(
        {
          group: Type.String(),
          status: Type.Enum(['ok', 'warning', 'drifting']),
          latest: ScoreView,
          alert: Nullable(
            Type.Object({ id: Type.String(), openedAt: DateTime, features: Type.Array(Type.String()) }, { additionalProperties: false }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

function scoreView(row: Selectable<DriftScoresTable>) {
  return {
    group: row.group_tag,
    bucketStart: row.bucket_start,
    bucketEnd: row.bucket_end,
    devices: row.devices,
    windows: row.windows,
    runs: row.runs,
    compared: row.compared,
    score: row.score,
    drifted: row.drifted === 1,
    driftedFeatures: JSON.parse(row.drifted_features) as string[],
    features: JSON.parse(row.results) as Record<string, DriftResult>,
    evaluatedAt: row.evaluated_at,
  };
}

export async function registerDriftRoutes(app: FastifyInstance, context: ServerContext, drift: DriftEvaluator): Promise<void> {
  app.get(
    '/v1/drift/scores',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'The stored drift scores of a version: one per device group and time bucket, oldest first',
        querystring: ScoresQuery,
        response: { 200: Page('scores', ScoreView, { model: Type.String(), version: Type.String() }) },
      },
    },
    async (request) => {
      const query = request.query as { model: string; version: string; group?: string; since?: string; limit?: string; cursor?: string };
      const page = pageRequest('drift-scores', query, SCORE_ORDER.length, 1000);
      let select = keysetPage(
        context.db.selectFrom('drift_scores').selectAll().where('model', '=', query.model).where('version', '=', query.version),
        SCORE_ORDER,
        page,
      );
      if (query.group) select = select.where('group_tag', '=', query.group);
      if (query.since) select = select.where('bucket_start', '>=', iso(query.since, 'since'));
      const { items, next } = pageOf(await select.execute(), page, (r) => [r.bucket_start, r.group_tag]);
      return { model: query.model, version: query.version, scores: items.map(scoreView), next };
    },
  );

  app.get(
    '/v1/drift/alerts',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'Drift alerts, newest first, with their webhook deliveries',
        querystring: AlertsQuery,
        response: { 200: Page('alerts', AlertView) },
      },
    },
    async (request) => {
      const query = request.query as { model?: string; version?: string; state?: 'firing' | 'resolved'; limit?: string; cursor?: string };
      const page = pageRequest('drift-alerts', query, ALERT_ORDER.length);
      let select = keysetPage(context.db.selectFrom('drift_alerts').selectAll(), ALERT_ORDER, page);
      if (query.model) select = select.where('model', '=', query.model);
      if (query.version) select = select.where('version', '=', query.version);
      if (query.state) select = select.where('state', '=', query.state);
      const { items: alerts, next } = pageOf(await select.execute(), page, (a) => [a.opened_at, a.id]);
      const deliveries =
        alerts.length === 0
          ? []
          : await context.db
              .selectFrom('webhook_deliveries')
              .select(['id', 'alert_id', 'event', 'created_at', 'attempts', 'delivered_at', 'response_status', 'last_error'])
              .where(
                'alert_id',
                'in',
                alerts.map((a) => a.id),
              )
              .orderBy('created_at')
              .execute();
      return {
        next,
        alerts: alerts.map((a) => ({
          id: a.id,
          model: a.model,
          version: a.version,
          group: a.group_tag,
          state: a.state,
          openedAt: a.opened_at,
          resolvedAt: a.resolved_at,
          firstBucket: a.first_bucket,
          lastBucket: a.last_bucket,
          score: a.score,
          features: JSON.parse(a.features) as string[],
          deliveries: deliveries
            .filter((d) => d.alert_id === a.id)
            .map((d) => ({
              id: d.id,
              event: d.event,
              createdAt: d.created_at,
              attempts: d.attempts,
              deliveredAt: d.delivered_at,
              responseStatus: d.response_status,
              lastError: d.last_error,
            })),
        })),
      };
    },
  );

  app.get(
    '/v1/models/:name/versions/:version/drift',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'The drift status of a version, per device group: ok, warning (last bucket drifted) or drifting (alert firing)',
        params: VersionParams,
        response: { 200: DriftStatus },
      },
    },
    async (request) => {
      const { name, version } = request.params as { name: string; version: string };
      const reference = await context.db
        .selectFrom('reference_profiles')
        .select(['source', 'runs', 'created_at'])
        .where('model', '=', name)
        .where('version', '=', version)
        .executeTakeFirst();
      if (!reference) {
        await findVersion(context.db, name, version);
        return { model: name, version, status: 'no-reference', reference: null, groups: [] };
      }
      // The latest bucket of each group, and its firing alert if any.
      const latest = await latestScores(context.db, { model: name, version });
      const firing = await context.db
        .selectFrom('drift_alerts')
        .select(['id', 'group_tag', 'opened_at', 'features'])
        .where('model', '=', name)
        .where('version', '=', version)
        .where('state', '=', 'firing')
        .execute();
      const groups = latest.map((row) => {
        const alert = firing.find((a) => a.group_tag === row.group_tag);
        return {
          group: row.group_tag,
          status: alert ? 'drifting' : row.drifted === 1 ? 'warning' : 'ok',
          latest: scoreView(row),
          alert: alert ? { id: alert.id, openedAt: alert.opened_at, features: JSON.parse(alert.features) as string[] } : null,
        };
      });
      const rank = { ok: 0, warning: 1, drifting: 2 } as const;
      const worst = groups.reduce<keyof typeof rank>(
        (w, g) => (rank[g.status as keyof typeof rank] > rank[w] ? (g.status as keyof typeof rank) : w),
        'ok',
      );
      return {
        model: name,
        version,
        status: groups.length === 0 ? 'no-data' : worst,
        reference: { source: reference.source, runs: reference.runs, createdAt: reference.created_at },
        groups,
      };
    },
  );

  const Summary = Nullable(
    Type.Object(
      {
        count: Type.Integer(),
        mean: Nullable(Type.Number()),
        std: Nullable(Type.Number()),
        quantiles: Type.Array(Type.Object({ q: Type.Number(), value: Type.Number() }, { additionalProperties: false })),
      },
      { additionalProperties: false },
    ),
  );
  const Shares = Type.Array(Type.Number({ minimum: 0, maximum: 1 }));
  app.get(
    '/v1/models/:name/versions/:version/distribution',
    {
      onRequest: context.requireRead,
      schema: {
        summary:
          "One feature's reference distribution against the live one of a time range and device group (quantiles and a histogram over the reference's deciles, or category shares)",
        params: VersionParams,
        querystring: Type.Object(
          {
            feature: Type.String({
              minLength: 1,
              maxLength: 128,
              description: 'a feature name, as in the telemetry windows and the reference',
            }),
            group: Type.Optional(
              Type.Union([Type.Literal(ALL_DEVICES), Tag], { description: 'a device tag, or * (every device, the default)' }),
            ),
            since: Type.Optional({ ...Timestamp, description: 'start of the live range (default: an hour before `until`)' }),
            until: Type.Optional({ ...Timestamp, description: 'end of the live range (default: now)' }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            {
              model: Type.String(),
              version: Type.String(),
              feature: Type.String(),
              group: Type.String(),
              since: DateTime,
              until: DateTime,
              kind: Type.Enum(['numeric', 'categorical']),
              windows: Type.Integer({ description: 'telemetry windows merged into the live side' }),
              reference: Summary,
              live: Summary,
              histogram: Nullable(
                Type.Object(
                  {
                    edges: Type.Array(Type.Number(), {
                      description: "the reference's inner decile edges: bins are (-inf, e0], (e0, e1], …, (e_last, +inf)",
                    }),
                    reference: Shares,
                    live: Shares,
                  },
                  { additionalProperties: false },
                ),
              ),
              categories: Nullable(
                Type.Array(
                  Type.Object({ name: Type.String(), reference: Type.Number(), live: Type.Number() }, { additionalProperties: false }),
                ),
              ),
            },
            { additionalProperties: false },
          ),
        },
      },
    },
    async (request) => {
      const { name, version } = request.params as { name: string; version: string };
      const query = request.query as { feature: string; group?: string; since?: string; until?: string };
      await findVersion(context.db, name, version);
      const until = query.until ? iso(query.until, 'until') : new Date().toISOString();
      const since = query.since ? iso(query.since, 'since') : new Date(Date.parse(until) - 3600_000).toISOString();
      if (Date.parse(since) >= Date.parse(until))
        throw new EdgefleetError('EF_SCHEMA_INVALID', `since (${since}) must come before until (${until})`);
      return featureDistribution(context.db, {
        model: name,
        version,
        feature: query.feature,
        group: query.group ?? ALL_DEVICES,
        since,
        until,
      });
    },
  );

  app.post(
    '/v1/drift/evaluate',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Score new telemetry for drift now (otherwise every EDGEFLEET_DRIFT_EVALUATE_MS)',
        response: {
          200: Type.Object(
            {
              buckets: Type.Integer(),
              opened: Type.Integer({ description: 'alerts opened' }),
              resolved: Type.Integer({ description: 'alerts resolved' }),
              delivered: Type.Integer({ description: 'webhook deliveries made' }),
              pruned: Type.Integer({ description: 'rows deleted for age' }),
            },
            { additionalProperties: false },
          ),
        },
      },
    },
    async () => drift.evaluate(),
  );

  app.get(
    '/v1/drift',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'Drift per time bucket against the reference profile, computed now for any bucket width, a page of buckets at a time',
        querystring: DriftQuery,
        response: {
          200: Type.Object(
            {
              reference: Type.Object({ source: Type.String(), runs: Type.Integer() }, { additionalProperties: false }),
              windows: Type.Array(
                Type.Object(
                  {
                    windowStart: DateTime,
                    windowEnd: DateTime,
                    devices: Type.Integer(),
                    runs: Type.Integer(),
                    features: Type.Record(Type.String(), DriftResultView),
                    drifted: Type.Array(Type.String()),
                    score: Type.Number(),
                  },
                  { additionalProperties: false },
                ),
              ),
              next: Next,
            },
            { additionalProperties: false },
          ),
        },
      },
    },
    async (request) => {
      const query = request.query as {
        model: string;
        version: string;
        tag?: string;
        since?: string;
        bucketSeconds?: string;
        limit?: string;
        cursor?: string;
      };
      const page = pageRequest('drift', query, 1, 100);
      const result = await evaluateDrift(context.db, {
        model: query.model,
        version: query.version,
        ...(query.tag ? { tag: query.tag } : {}),
        ...(query.since ? { since: iso(query.since, 'since') } : {}),
        ...(query.bucketSeconds ? { bucketMs: Math.max(1, Number(query.bucketSeconds)) * 1000 } : {}),
        limit: page.limit,
        ...(page.after ? { after: Number(page.after[0]) } : {}),
      });
      return {
        reference: result.reference,
        windows: result.windows,
        next: result.nextAfter === null ? null : page.cursorFor([result.nextAfter]),
      };
    },
  );
}
