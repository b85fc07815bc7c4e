/** GET /v1/telemetry/windows: the windows stored, newest first, filtered by device and model. */
import type { Readable } from 'node:stream';
import { type DriftResult, type FeatureProfile, fromWire, kllQuantile, observedCount, variance, type WireProfile } from '@edgefleet/drift';
import {
  DeviceId,
  EdgefleetError,
  type ManifestPayload,
  ModelName,
  Semver,
  type SignedDocument,
  Tag,
  Timestamp,
} from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import type { Selectable } from 'kysely';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { findVersion } from '../registry/routes.ts';
import type { DriftScoresTable } from '../store/schema.ts';
import { createReferenceFromTelemetry, evaluateDrift, storeReference } from './drift.ts';
import type { DriftEvaluator } from './evaluator.ts';
import { datasetFormat, profileDataset } from './reference-dataset.ts';

const ListWindows = Type.Object(
  {
    device: Type.Optional(DeviceId),
    model: Type.Optional(ModelName),
    version: Type.Optional(Semver),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);

function iso(value: string, field: string): string {
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new EdgefleetError('EF_SCHEMA_INVALID', `${field} "${value}" is not a date`);
  return new Date(at).toISOString();
}

const VersionParams = Type.Object({ name: ModelName, version: Semver }, { additionalProperties: false });
const ReferenceBody = Type.Object(
  {
    from: Type.String({ ...Timestamp, description: 'first window start included (RFC 3339 UTC)' }),
    to: Type.String({ ...Timestamp, description: 'last window end included (RFC 3339 UTC)' }),
    tag: Type.Optional(Type.String({ ...Tag, description: 'only devices with this tag (a canary group)' })),
  },
  { additionalProperties: false },
);
const DriftQuery = Type.Object(
  {
    model: ModelName,
    version: Semver,
    tag: Type.Optional(Tag),
    since: Type.Optional(Timestamp),
    bucketSeconds: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })),
  },
  { additionalProperties: false },
);

/** A profile as people read it: counts, moments and quartiles, or the category counts. */
function summarizeProfile(name: string, profile: FeatureProfile) {
  if (profile.kind === 'categorical') {
    return { name, kind: profile.kind, count: observedCount(profile), missing: profile.missing, categories: profile.categories.counts };
  }
  const { moments, sketch } = profile;
  const quantile = (q: number) => (sketch.n > 0 ? kllQuantile(sketch, q) : null);
  return {
    name,
    kind: profile.kind,
    count: moments.count,
    missing: observedCount(profile) - moments.count,
    mean: moments.count > 0 ? moments.mean : null,
    std: moments.count > 1 ? Math.sqrt(variance(moments)) : null,
    min: moments.count > 0 ? moments.min : null,
    max: moments.count > 0 ? moments.max : null,
    quartiles: [quantile(0.25), quantile(0.5), quantile(0.75)],
  };
}

/** A device group: a tag, or * for every device. */
const Group = Type.Union([Tag, Type.Literal('*')], { description: 'a device tag, or * for every device' });
const ScoresQuery = Type.Object(
  {
    model: ModelName,
    version: Semver,
    group: Type.Optional(Group),
    since: Type.Optional(Timestamp),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$' })),
  },
  { additionalProperties: false },
);
const AlertsQuery = Type.Object(
  {
    model: Type.Optional(ModelName),
    version: Type.Optional(Semver),
    state: Type.Optional(Type.Enum(['firing', 'resolved'])),
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

export async function registerTelemetryRoutes(app: FastifyInstance, context: ServerContext, drift: DriftEvaluator): Promise<void> {
  app.get(
    '/v1/drift/scores',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'The stored drift scores of a version: one per device group and time bucket, oldest first',
        querystring: ScoresQuery,
      },
    },
    async (request) => {
      const query = request.query as { model: string; version: string; group?: string; since?: string; limit?: string };
      let select = context.db
        .selectFrom('drift_scores')
        .selectAll()
        .where('model', '=', query.model)
        .where('version', '=', query.version)
        .orderBy('bucket_start')
        .orderBy('group_tag');
      if (query.group) select = select.where('group_tag', '=', query.group);
      if (query.since) select = select.where('bucket_start', '>=', iso(query.since, 'since'));
      const rows = await select.limit(Number(query.limit ?? 10_000)).execute();
      return { model: query.model, version: query.version, scores: rows.map(scoreView) };
    },
  );

  app.get(
    '/v1/drift/alerts',
    {
      onRequest: context.requireRead,
      schema: { summary: 'Drift alerts, newest first, with their webhook deliveries', querystring: AlertsQuery },
    },
    async (request) => {
      const query = request.query as { model?: string; version?: string; state?: 'firing' | 'resolved' };
      let select = context.db.selectFrom('drift_alerts').selectAll().orderBy('opened_at', 'desc').limit(1000);
      if (query.model) select = select.where('model', '=', query.model);
      if (query.version) select = select.where('version', '=', query.version);
      if (query.state) select = select.where('state', '=', query.state);
      const alerts = await select.execute();
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
      const latest = await context.db
        .selectFrom('drift_scores as s')
        .selectAll('s')
        .where('s.model', '=', name)
        .where('s.version', '=', version)
        .where('s.bucket_start', '=', (eb) =>
          eb
            .selectFrom('drift_scores as t')
            .select((e) => e.fn.max('t.bucket_start').as('m'))
            .whereRef('t.model', '=', 's.model')
            .whereRef('t.version', '=', 's.version')
            .whereRef('t.group_tag', '=', 's.group_tag'),
        )
        .orderBy('s.group_tag')
        .execute();
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

  app.post(
    '/v1/drift/evaluate',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'Score new telemetry for drift now (otherwise every EDGEFLEET_DRIFT_EVALUATE_MS)' },
    },
    async () => drift.evaluate(),
  );

  app.post(
    '/v1/models/:name/versions/:version/reference',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'Make a period of live telemetry the reference profile of a version', params: VersionParams, body: ReferenceBody },
    },
    async (request, reply) => {
      const { name, version } = request.params as { name: string; version: string };
      const { from, to, tag } = request.body as { from: string; to: string; tag?: string };
      const actor = request.principal?.id ?? 'unknown';
      const created = await createReferenceFromTelemetry(context.db, {
        model: name,
        version,
        from: iso(from, 'from'),
        to: iso(to, 'to'),
        ...(tag ? { tag } : {}),
        actor,
      });
      await audit(context.db, { actor, action: 'model.reference', target: `model:${name}@${version}`, after: { from, to, ...created } });
      return reply.status(201).send({ model: name, version, ...created });
    },
  );

  app.get(
    '/v1/models/:name/versions/:version/reference',
    {
      onRequest: context.requireRead,
      schema: { summary: 'The reference profile of a version, summarized per feature', params: VersionParams },
    },
    async (request) => {
      const { name, version } = request.params as { name: string; version: string };
      const row = await context.db
        .selectFrom('reference_profiles')
        .selectAll()
        .where('model', '=', name)
        .where('version', '=', version)
        .executeTakeFirst();
      if (!row)
        throw new EdgefleetError(
          'EF_NOT_FOUND',
          `${name}@${version} has no reference profile (upload a dataset or POST a telemetry period)`,
        );
      return {
        model: name,
        version,
        source: row.source,
        windows: row.windows,
        runs: row.runs,
        createdAt: row.created_at,
        createdBy: row.created_by,
        features: (JSON.parse(row.features) as { name: string; profile: WireProfile }[]).map(({ name: feature, profile }) =>
          summarizeProfile(feature, fromWire(profile)),
        ),
      };
    },
  );

  // Reference datasets arrive as they are: the route streams them (no body buffering, its own limit).
  app.addContentTypeParser(['text/csv', 'application/x-ndjson', 'application/jsonl'], (_request, payload, done) => done(null, payload));

  app.put(
    '/v1/models/:name/versions/:version/reference',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Make a reference dataset (body: text/csv with a header row, or application/x-ndjson) the reference profile of a version',
        params: VersionParams,
      },
    },
    async (request, reply) => {
      const { name, version } = request.params as { name: string; version: string };
      const format = datasetFormat(undefined, request.headers['content-type']);
      if (!format) {
        throw new EdgefleetError(
          'EF_REFERENCE_INVALID',
          'send the dataset as text/csv (with a header row) or application/x-ndjson (one JSON object per line)',
        );
      }
      const row = await findVersion(context.db, name, version).catch((error: unknown) => {
        (request.body as Readable).resume(); // the dataset is not read: drain it
        throw error;
      });
      const telemetry = (JSON.parse(row.manifest) as SignedDocument<ManifestPayload>).payload.telemetry;
      const dataset = await profileDataset(request.body as Readable, {
        format,
        maxBytes: context.config.maxReferenceBytes,
        ...(telemetry ? { telemetry } : {}),
      });
      const actor = request.principal?.id ?? 'unknown';
      await storeReference(context.db, {
        model: name,
        version,
        source: `dataset (${dataset.rows} rows, ${format})`,
        windows: 0,
        runs: dataset.rows,
        features: dataset.features,
        actor,
      });
      const features = dataset.features.map((f) => f.name);
      await audit(context.db, {
        actor,
        action: 'model.reference',
        target: `model:${name}@${version}`,
        after: { rows: dataset.rows, features },
      });
      return reply.status(201).send({ model: name, version, rows: dataset.rows, features });
    },
  );

  app.get(
    '/v1/drift',
    { onRequest: context.requireRead, schema: { summary: 'Drift per window against the reference profile', querystring: DriftQuery } },
    async (request) => {
      const query = request.query as { model: string; version: string; tag?: string; since?: string; bucketSeconds?: string };
      return evaluateDrift(context.db, {
        model: query.model,
        version: query.version,
        ...(query.tag ? { tag: query.tag } : {}),
        ...(query.since ? { since: iso(query.since, 'since') } : {}),
        ...(query.bucketSeconds ? { bucketMs: Math.max(1, Number(query.bucketSeconds)) * 1000 } : {}),
      });
    },
  );

  app.get(
    '/v1/telemetry/windows',
    { onRequest: context.requireRead, schema: { summary: 'Telemetry windows stored, newest first', querystring: ListWindows } },
    async (request) => {
      const query = request.query as { device?: string; model?: string; version?: string; limit?: string };
      let select = context.db
        .selectFrom('telemetry_windows')
        .select(['device_id', 'boot_id', 'seq', 'model', 'version', 'window_start', 'window_end', 'runs', 'dropped', 'received_at'])
        .orderBy('window_end', 'desc')
        .orderBy('device_id')
        .orderBy('seq', 'desc');
      if (query.device) select = select.where('device_id', '=', query.device);
      if (query.model) select = select.where('model', '=', query.model);
      if (query.version) select = select.where('version', '=', query.version);
      const rows = await select.limit(Number(query.limit ?? 1000)).execute();
      return {
        windows: rows.map((r) => ({
          deviceId: r.device_id,
          bootId: r.boot_id,
          seq: r.seq,
          model: { name: r.model, version: r.version },
          windowStart: r.window_start,
          windowEnd: r.window_end,
          runs: r.runs,
          dropped: r.dropped,
          receivedAt: r.received_at,
        })),
      };
    },
  );
}
