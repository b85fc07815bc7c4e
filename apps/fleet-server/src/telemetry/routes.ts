/** GET /v1/telemetry/windows: the windows stored, newest first, filtered by device and model. */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';

const ListWindows = Type.Object(
  {
    device: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' })),
    model: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' })),
    version: Type.Optional(Type.String({ maxLength: 64 })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);

export async function registerTelemetryRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
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
