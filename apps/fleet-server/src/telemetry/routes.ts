/** GET /v1/telemetry/windows: the windows stored, newest first, filtered by device and model. */
import { EdgefleetError, Timestamp } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { createReferenceFromTelemetry, evaluateDrift } from './drift.ts';

const ListWindows = Type.Object(
  {
    device: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' })),
    model: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' })),
    version: Type.Optional(Type.String({ maxLength: 64 })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);

/** RFC 3339 UTC, as the protocol writes times. */
const TIME = { pattern: (Timestamp as unknown as { pattern: string }).pattern };

function iso(value: string, field: string): string {
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new EdgefleetError('EF_SCHEMA_INVALID', `${field} "${value}" is not a date`);
  return new Date(at).toISOString();
}

const VersionParams = Type.Object(
  { name: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' }), version: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);
const ReferenceBody = Type.Object(
  {
    from: Type.String({ ...TIME, description: 'first window start included (RFC 3339 UTC)' }),
    to: Type.String({ ...TIME, description: 'last window end included (RFC 3339 UTC)' }),
    tag: Type.Optional(
      Type.String({ pattern: '^[a-z0-9][a-z0-9._:=-]{0,63}$', description: 'only devices with this tag (a canary group)' }),
    ),
  },
  { additionalProperties: false },
);
const DriftQuery = Type.Object(
  {
    model: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' }),
    version: Type.String({ minLength: 1, maxLength: 64 }),
    tag: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9._:=-]{0,63}$' })),
    since: Type.Optional(Type.String(TIME)),
    bucketSeconds: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })),
  },
  { additionalProperties: false },
);

export async function registerTelemetryRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  app.post(
    '/v1/models/:name/versions/:version/reference',
    {
      preHandler: context.requireAdmin,
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
    '/v1/drift',
    { preHandler: context.requireRead, schema: { summary: 'Drift per window against the reference profile', querystring: DriftQuery } },
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
    { preHandler: context.requireRead, schema: { summary: 'Telemetry windows stored, newest first', querystring: ListWindows } },
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
