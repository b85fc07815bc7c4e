/** GET /v1/audit: who changed what, when, with the state before and after. */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';

const AuditQuery = Type.Object(
  {
    target: Type.Optional(Type.String({ maxLength: 200 })),
    action: Type.Optional(Type.String({ maxLength: 100 })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);

export async function registerAuditRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  app.get(
    '/v1/audit',
    {
      onRequest: context.requireRead,
      schema: { summary: 'The audit log: who changed what, when, before and after', querystring: AuditQuery },
    },
    async (request) => {
      const query = request.query as { target?: string; action?: string; limit?: string };
      let select = context.db.selectFrom('audit_log').selectAll().orderBy('id', 'desc');
      if (query.target) select = select.where('target', '=', query.target);
      if (query.action) select = select.where('action', '=', query.action);
      const rows = await select.limit(Number(query.limit ?? 100)).execute();
      return {
        entries: rows.map((r) => ({
          at: r.at,
          actor: r.actor,
          action: r.action,
          target: r.target,
          before: r.before === null ? null : (JSON.parse(r.before) as unknown),
          after: r.after === null ? null : (JSON.parse(r.after) as unknown),
        })),
      };
    },
  );
}
