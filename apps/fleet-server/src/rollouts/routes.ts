/** The rollout API: create, watch, pause, resume, abort (rolls back), promote (skips the soak). */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';
import { pagedQuery, pageOf, pageRequest } from '../http/paging.ts';
import type { RolloutsTable } from '../store/schema.ts';
import type { RolloutEngine } from './engine.ts';
import { ROLLOUT_ORDER } from './repository.ts';
import { type RolloutSpec, RolloutSpecSchema } from './spec.ts';

const ListRollouts = pagedQuery({
  state: Type.Optional(Type.Enum(['running', 'paused', 'rolling_back', 'completed', 'rolled_back', 'aborted'])),
});
const IdParams = Type.Object({ id: Type.String({ pattern: '^ro-[0-9a-f]{8}$' }) }, { additionalProperties: false });

export async function registerRolloutRoutes(app: FastifyInstance, context: ServerContext, engine: RolloutEngine): Promise<void> {
  app.post(
    '/v1/rollouts',
    { onRequest: context.requireAdmin, schema: { summary: 'Start a staged rollout of a model version', body: RolloutSpecSchema } },
    async (request, reply) => {
      const rollout = await engine.create(request.body as RolloutSpec, request.principal?.id ?? 'unknown');
      return reply.status(201).send(rollout);
    },
  );
  app.get(
    '/v1/rollouts',
    {
      onRequest: context.requireRead,
      schema: { summary: 'Rollouts, newest first, without their members (GET /v1/rollouts/:id has them)', querystring: ListRollouts },
    },
    async (request) => {
      const query = request.query as { state?: RolloutsTable['state']; limit?: string; cursor?: string };
      const page = pageRequest('rollouts', query, ROLLOUT_ORDER.length, 20);
      const rows = await engine.list({ ...(query.state ? { state: query.state } : {}), limit: page.limit + 1, after: page.after });
      const { items, next } = pageOf(rows, page, (r) => [r.createdAt, r.id]);
      return { rollouts: items, next };
    },
  );
  app.get(
    '/v1/rollouts/:id',
    { onRequest: context.requireRead, schema: { summary: 'A rollout: stages and per-device state', params: IdParams } },
    async (request) => engine.get((request.params as { id: string }).id),
  );
  for (const action of ['pause', 'resume', 'abort', 'promote'] as const) {
    app.post(
      `/v1/rollouts/:id/${action}`,
      {
        onRequest: context.requireAdmin,
        schema: { summary: `${action[0]?.toUpperCase()}${action.slice(1)} a rollout`, params: IdParams },
      },
      async (request) => engine[action]((request.params as { id: string }).id, request.principal?.id ?? 'unknown'),
    );
  }
}
