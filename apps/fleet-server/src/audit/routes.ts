/** GET /v1/audit: who changed what, when, with the state before and after. */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Nullable, Page } from '../http/schemas.ts';

const AuditQuery = pagedQuery({
  target: Type.Optional(Type.String({ maxLength: 200 })),
  action: Type.Optional(Type.String({ maxLength: 100 })),
  actor: Type.Optional(Type.String({ maxLength: 200, description: 'the acting token id, `env`, or a part of the server' })),
});
const AuditEntry = Type.Object(
  {
    id: Type.Integer(),
    at: DateTime,
    actor: Type.String({ description: 'the acting token id, env, enrollment-token:<id>, or a part of the server' }),
    actorName: Nullable(Type.String({ description: 'the acting token’s name when it acted' })),
    action: Type.String(),
    target: Type.String(),
    before: Type.Unknown(),
    after: Type.Unknown(),
  },
  { additionalProperties: false },
);
const AUDIT_ORDER: readonly SortColumn[] = [{ column: 'id', direction: 'desc' }];

export async function registerAuditRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  app.get(
    '/v1/audit',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'The audit log, newest first: who changed what, when, before and after',
        querystring: AuditQuery,
        response: { 200: Page('entries', AuditEntry) },
      },
    },
    async (request) => {
      const query = request.query as { target?: string; action?: string; actor?: string; limit?: string; cursor?: string };
      const page = pageRequest('audit', query, AUDIT_ORDER.length);
      let select = keysetPage(context.db.selectFrom('audit_log').selectAll(), AUDIT_ORDER, page);
      if (query.target) select = select.where('target', '=', query.target);
      if (query.action) select = select.where('action', '=', query.action);
      if (query.actor) select = select.where('actor', '=', query.actor);
      const { items, next } = pageOf(await select.execute(), page, (r) => [Number(r.id)]);
      return {
        next,
        entries: items.map((r) => ({
          at: r.at,
          id: Number(r.id),
          actor: r.actor,
          actorName: r.actor_name,
          action: r.action,
          target: r.target,
          before: r.before === null ? null : (JSON.parse(r.before) as unknown),
          after: r.after === null ? null : (JSON.parse(r.after) as unknown),
        })),
      };
    },
  );
}
