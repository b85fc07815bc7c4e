/**
 * GET /v1/events: what changes, as it changes, as server-sent events (text/event-stream), for the
 * dashboard and anyone who would otherwise poll: `rollout`, a rollout's summary (state, stage,
 * per-stage counts, gates, reason) whenever its state, stage or members' statuses change,
 * coalesced over 100 ms; `drift`, a version's groups whose drift scores (and alerts) a drift pass
 * has just stored. Each event has an increasing `id`; a `: keep-alive` comment every 15 s
 * keeps proxies from closing a quiet stream. The token is a bearer header (a reader built on fetch,
 * not EventSource, which cannot send one); a read token suffices. A client that falls more than
 * 1 MiB behind is disconnected (it reconnects and reads the state again), so a stuck reader never
 * holds the server's memory.
 */

import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';
import type { DriftEvaluator } from '../drift/evaluator.ts';
import { mediaResponse } from '../http/schemas.ts';
import type { RolloutEngine } from '../rollouts/engine.ts';

const COALESCE_MS = 100;
const HEARTBEAT_MS = 15_000;
const MAX_BEHIND_BYTES = 1 << 20;

const EventsQuery = Type.Object(
  { rollout: Type.Optional(Type.String({ pattern: '^ro-[0-9a-f]{8}$', description: 'only the events of this rollout' })) },
  { additionalProperties: false },
);

interface StreamEvent {
  readonly type: 'rollout' | 'drift';
  readonly subject: string;
  readonly data: unknown;
}

export async function registerEventRoutes(
  app: FastifyInstance,
  context: ServerContext,
  engine: RolloutEngine,
  drift: DriftEvaluator,
): Promise<void> {
  const subscribers = new Set<(event: StreamEvent) => void>();
  const streams = new Set<ServerResponse>();
  /** The connections that carried a stream: never reused for another request, closed with it. */
  const sockets = new Set<Socket>();
  const pending = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sequence = 0;

  async function publishPending(): Promise<void> {
    timer = undefined;
    const ids = [...pending];
    pending.clear();
    for (const id of ids) {
      try {
        const { devices: _members, ...summary } = await engine.get(id);
        for (const subscriber of subscribers) subscriber({ type: 'rollout', subject: id, data: summary });
      } catch (error) {
        app.log.debug({ err: error, rolloutId: id }, 'rollout event not sent');
      }
    }
  }
  const unsubscribe = engine.onChange((id) => {
    if (subscribers.size === 0) return;
    pending.add(id);
    timer ??= setTimeout(() => void publishPending(), COALESCE_MS);
  });

  const unsubscribeDrift = drift.onScored((scored) => {
    const data = {
      model: scored.model,
      version: scored.version,
      groups: scored.groups,
      buckets: scored.buckets,
      at: new Date().toISOString(),
    };
    for (const subscriber of subscribers) subscriber({ type: 'drift', subject: `${scored.model}@${scored.version}`, data });
  });

  app.addHook('preClose', async () => {
    unsubscribe();
    unsubscribeDrift();
    if (timer) clearTimeout(timer);
    // Ended and their sockets closed: a stream that never ends would hold the server's close.
    for (const stream of streams) {
      stream.end();
      stream.socket?.destroy();
    }
    for (const socket of sockets) socket.destroy();
  });

  app.get(
    '/v1/events',
    {
      onRequest: context.requireRead,
      schema: {
        summary:
          'Server-sent events: each rollout’s summary as it changes (state, stage, per-stage counts, gates), and each drift pass’s scored versions; ?rollout= for one rollout',
        querystring: EventsQuery,
        response: {
          200: mediaResponse(
            'text/event-stream',
            'events: `ready`, then `rollout` (data: a rollout summary as GET /v1/rollouts lists it) and `drift` (data: model, version, groups scored, buckets, at)',
          ),
        },
      },
    },
    async (request, reply) => {
      const { rollout } = request.query as { rollout?: string };
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-content-type-options': 'nosniff',
        // Proxies such as nginx would otherwise buffer the stream.
        'x-accel-buffering': 'no',
      });
      streams.add(raw);
      const socket = request.raw.socket;
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      const write = (text: string) => {
        if (raw.writableLength > MAX_BEHIND_BYTES) {
          raw.destroy();
          return;
        }
        raw.write(text);
      };
      const send = (type: string, data: unknown) => write(`id: ${++sequence}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
      write('retry: 2000\n\n');
      send('ready', { at: new Date().toISOString(), ...(rollout ? { rollout } : {}) });
      const subscriber = (event: StreamEvent) => {
        if (!rollout || (event.type === 'rollout' && event.subject === rollout)) send(event.type, event.data);
      };
      subscribers.add(subscriber);
      const heartbeat = setInterval(() => write(': keep-alive\n\n'), HEARTBEAT_MS);
      heartbeat.unref();
      raw.on('close', () => {
        clearInterval(heartbeat);
        subscribers.delete(subscriber);
        streams.delete(raw);
        // The response never ends by itself: its connection goes with it (a client that went away
        // would otherwise leave it open, holding the server's close).
        socket.destroy();
      });
    },
  );
}
