/**
 * The telemetry API: the windows devices sent (stored once each), and a version's reference profile
 * (from a period of telemetry, or a reference dataset), read back per feature.
 */
import type { Readable } from 'node:stream';
import { type FeatureProfile, fromWire, kllQuantile, observedCount, variance, type WireProfile } from '@edgefleet/drift';
import {
  DeviceId,
  EdgefleetError,
  type ManifestPayload,
  ModelName,
  Semver,
  type SignedDocument,
  Tag,
  type TelemetryWindow,
  Timestamp,
} from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { createReferenceFromTelemetry, storeReference } from '../drift/scoring.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Nullable, Page } from '../http/schemas.ts';
import { iso } from '../http/time.ts';
import { findVersion } from '../registry/versions.ts';
import { datasetFormat, profileDataset } from './reference-dataset.ts';

const ListWindows = pagedQuery({
  device: Type.Optional(DeviceId),
  model: Type.Optional(ModelName),
  version: Type.Optional(Semver),
});
/** Newest first; (device, boot, seq) makes the key unique. */
const WINDOW_ORDER: readonly SortColumn[] = [
  { column: 'window_end', direction: 'desc' },
  { column: 'device_id', direction: 'asc' },
  { column: 'boot_id', direction: 'asc' },
  { column: 'seq', direction: 'desc' },
];

const VersionParams = Type.Object({ name: ModelName, version: Semver }, { additionalProperties: false });

const ReferenceBody = Type.Object(
  {
    from: Type.String({ ...Timestamp, description: 'first window start included (RFC 3339 UTC)' }),
    to: Type.String({ ...Timestamp, description: 'last window end included (RFC 3339 UTC)' }),
    tag: Type.Optional(Type.String({ ...Tag, description: 'only devices with this tag (a canary group)' })),
  },
  { additionalProperties: false },
);

const WindowView = Type.Object(
  {
    deviceId: Type.String(),
    bootId: Type.String(),
    seq: Type.Integer(),
    model: Type.Object({ name: Type.String(), version: Type.String() }, { additionalProperties: false }),
    windowStart: DateTime,
    windowEnd: DateTime,
    runs: Type.Integer(),
    dropped: Type.Integer({ description: 'windows the device dropped before this one' }),
    receivedAt: DateTime,
    executionProvider: Type.String({ description: 'where the runs executed: webgpu, wasm or cpu' }),
    errors: Type.Integer({ description: 'runs that failed in the window' }),
    latencyMs: Nullable(
      Type.Object(
        { p50: Type.Number(), p95: Type.Number(), p99: Type.Number(), max: Type.Number() },
        { additionalProperties: false, description: 'inference latency over the window’s runs (from its sketch); null without runs' },
      ),
    ),
    shadow: Type.Optional(
      Type.Object(
        {
          version: Type.String({ description: 'the candidate run in shadow' }),
          runs: Type.Integer({ description: 'live inputs it ran on and was compared' }),
          skipped: Type.Integer({ description: 'samples skipped: the model busy, or the time budget spent' }),
          errors: Type.Integer(),
          rows: Type.Integer({ description: 'class rows compared' }),
          agreement: Nullable(Type.Number({ description: 'share of rows where both picked the same class' })),
          topKOverlap: Nullable(Type.Number({ description: 'mean top-3 overlap per row (0-1)' })),
          maxAbsDiff: Type.Number(),
          meanAbsDiff: Nullable(Type.Number({ description: 'mean absolute difference per numeric output element' })),
          latencyRatio: Nullable(
            Type.Object(
              { p50: Type.Number(), p95: Type.Number(), p99: Type.Number(), max: Type.Number() },
              { additionalProperties: false, description: 'the candidate’s latency over the active version’s, per compared input' },
            ),
          ),
        },
        { additionalProperties: false, description: 'a candidate in shadow beside this version, as the device compared it' },
      ),
    ),
  },
  { additionalProperties: false },
);

/** The latency quantiles of a stored window, from its KLL sketch. */
function windowLatency(profile: WireProfile): { p50: number; p95: number; p99: number; max: number } | null {
  const latency = fromWire(profile);
  if (latency.kind !== 'numeric' || latency.sketch.n === 0) return null;
  const q = (p: number) => kllQuantile(latency.sketch, p);
  const p99 = q(0.99);
  // The sketch's max travels at another precision than its retained values: never below p99.
  return { p50: q(0.5), p95: q(0.95), p99, max: Math.max(p99, q(1)) };
}
const FeatureSummary = Type.Union([
  Type.Object(
    {
      name: Type.String(),
      kind: Type.Literal('categorical'),
      count: Type.Integer(),
      missing: Type.Integer(),
      categories: Type.Record(Type.String(), Type.Number()),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: Type.String(),
      kind: Type.Literal('numeric'),
      count: Type.Integer(),
      missing: Type.Integer(),
      mean: Nullable(Type.Number()),
      std: Nullable(Type.Number()),
      min: Nullable(Type.Number()),
      max: Nullable(Type.Number()),
      quartiles: Type.Array(Nullable(Type.Number()), { minItems: 3, maxItems: 3 }),
    },
    { additionalProperties: false },
  ),
]);
const ReferenceView = Type.Object(
  {
    model: Type.String(),
    version: Type.String(),
    source: Type.String(),
    windows: Type.Integer(),
    runs: Type.Integer(),
    createdAt: DateTime,
    createdBy: Type.String(),
    features: Type.Array(FeatureSummary),
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

export async function registerTelemetryRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  app.post(
    '/v1/models/:name/versions/:version/reference',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Make a period of live telemetry the reference profile of a version; honours Idempotency-Key',
        params: VersionParams,
        body: ReferenceBody,
        response: {
          201: Type.Object(
            {
              model: Type.String(),
              version: Type.String(),
              windows: Type.Integer(),
              runs: Type.Integer(),
              features: Type.Array(Type.String()),
            },
            { additionalProperties: false },
          ),
        },
      },
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
      return reply
        .status(201)
        .header('location', `/v1/models/${name}/versions/${version}/reference`)
        .send({ model: name, version, ...created });
    },
  );

  app.get(
    '/v1/models/:name/versions/:version/reference',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'The reference profile of a version, summarized per feature',
        params: VersionParams,
        response: { 200: ReferenceView },
      },
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
        response: {
          201: Type.Object(
            { model: Type.String(), version: Type.String(), rows: Type.Integer(), features: Type.Array(Type.String()) },
            { additionalProperties: false },
          ),
        },
      },
      config: {
        docBody: {
          content: {
            'text/csv': { schema: Type.String({ description: 'a header row naming the telemetry features, then one row per sample' }) },
            'application/x-ndjson': { schema: Type.String({ description: 'one JSON object per line, keyed by feature name' }) },
          },
        },
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
      return reply
        .status(201)
        .header('location', `/v1/models/${name}/versions/${version}/reference`)
        .send({ model: name, version, rows: dataset.rows, features });
    },
  );

  app.get(
    '/v1/telemetry/windows',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'Telemetry windows stored, newest first',
        querystring: ListWindows,
        response: { 200: Page('windows', WindowView) },
      },
    },
    async (request) => {
      const query = request.query as { device?: string; model?: string; version?: string; limit?: string; cursor?: string };
      const page = pageRequest('telemetry-windows', query, WINDOW_ORDER.length);
      let select = keysetPage(
        context.db
          // Every column of the table.
          .selectFrom('telemetry_windows')
          .selectAll(),
        WINDOW_ORDER,
        page,
      );
      if (query.device) select = select.where('device_id', '=', query.device);
      if (query.model) select = select.where('model', '=', query.model);
      if (query.version) select = select.where('version', '=', query.version);
      const { items, next } = pageOf(await select.execute(), page, (r) => [r.window_end, r.device_id, r.boot_id, r.seq]);
      return {
        next,
        windows: items.map((r) => {
          const window = JSON.parse(r.body) as TelemetryWindow;
          return {
            deviceId: r.device_id,
            bootId: r.boot_id,
            seq: r.seq,
            model: { name: r.model, version: r.version },
            windowStart: r.window_start,
            windowEnd: r.window_end,
            runs: r.runs,
            dropped: r.dropped,
            receivedAt: r.received_at,
            executionProvider: window.executionProvider,
            errors: window.errors.reduce((sum, e) => sum + e.count, 0),
            latencyMs: windowLatency(window.latencyMs as WireProfile),
            ...(window.shadow
              ? {
                  shadow: {
                    version: window.shadow.version,
                    runs: window.shadow.runs,
                    skipped: window.shadow.skipped,
                    errors: window.shadow.errors,
                    rows: window.shadow.rows,
                    agreement: window.shadow.rows > 0 ? window.shadow.agreed / window.shadow.rows : null,
                    topKOverlap: window.shadow.rows > 0 ? window.shadow.overlap / window.shadow.rows : null,
                    maxAbsDiff: window.shadow.maxAbsDiff,
                    meanAbsDiff: window.shadow.elements > 0 ? window.shadow.absDiffSum / window.shadow.elements : null,
                    latencyRatio: windowLatency(window.shadow.latencyRatio as WireProfile),
                  },
                }
              : {}),
          };
        }),
      };
    },
  );
}
