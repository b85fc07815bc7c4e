/** The rollout API: create, watch, pause, resume, abort (rolls back), promote (skips the soak). */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';
import type { RolloutEngine, RolloutSpec } from './engine.ts';

const Stage = Type.Object(
  {
    percent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'cumulative share of the targeted devices' })),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'cumulative number of devices' })),
    soakSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 24 * 3600 })),
  },
  { additionalProperties: false },
);

const CreateRollout = Type.Object(
  {
    model: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' }),
    version: Type.String({ maxLength: 64 }),
    selector: Type.Object(
      {
        all: Type.Optional(Type.Literal(true, { description: 'every active device of the fleet (alone: no tags, no devices)' })),
        tags: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9._:=-]{0,63}$' }), { maxItems: 16 })),
        devices: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' }), { maxItems: 100_000 })),
      },
      { additionalProperties: false, description: 'which devices: tags and/or device ids, or {"all": true}' },
    ),
    stages: Type.Array(Stage, { minItems: 1, maxItems: 20 }),
    gates: Type.Optional(
      Type.Object(
        {
          maxFailureRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
          minDevicesReporting: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000 })),
          maxLatencyRatio: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 })),
          maxDriftScore: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'largest share of drifting features, 0-1' })),
          maxOutputShift: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 100,
              description: 'largest output distance from the replaced version (JS or normed Wasserstein)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    onGateFailure: Type.Optional(Type.Enum(['pause', 'rollback'])),
    rollback: Type.Optional(
      Type.Boolean({ description: 'a fleet-wide rollback: the version may be older than what devices run (signed as a rollback)' }),
    ),
    offlineAfterSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: 30 * 24 * 3600 })),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.String({ pattern: '^ro-[0-9a-f]{8}$' }) }, { additionalProperties: false });

export async function registerRolloutRoutes(app: FastifyInstance, context: ServerContext, engine: RolloutEngine): Promise<void> {
  app.post(
    '/v1/rollouts',
    { onRequest: context.requireAdmin, schema: { summary: 'Start a staged rollout of a model version', body: CreateRollout } },
    async (request, reply) => {
      const rollout = await engine.create(request.body as RolloutSpec, request.principal?.id ?? 'unknown');
      return reply.status(201).send(rollout);
    },
  );
  app.get('/v1/rollouts', { onRequest: context.requireRead, schema: { summary: 'Rollouts, newest first' } }, async () => ({
    rollouts: await engine.list(),
  }));
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
