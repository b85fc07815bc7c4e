/**
 * HTTP hooks an external broker calls to authenticate devices and authorize their topics
 * (EDGEFLEET_BROKER_AUTH=http): how EMQX, the usual broker for large fleets, or any broker with
 * HTTP authentication/authorization plugins keeps devices apart by the same rules as the embedded
 * broker (protocol topics: a device publishes only to its own device→server topics and subscribes
 * only to its own server→device ones).
 *
 * The request and answer shapes are EMQX 5's HTTP authenticator and authorizer (docs/scaling.md
 * has the EMQX configuration): `POST /v1/broker/authenticate` with `{clientid, username, password}`
 * answers 200 `{"result": "allow" | "deny", "is_superuser": bool}`; `POST /v1/broker/authorize`
 * with `{clientid, username, topic, action}` answers 200 `{"result": "allow" | "deny"}`.
 *
 * The broker proves itself with `Authorization: Bearer <EDGEFLEET_BROKER_HOOK_SECRET>`, checked
 * before the body is read.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { EdgefleetError } from '@edgefleet/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';

const Authenticate = Type.Object(
  {
    clientid: Type.String({ maxLength: 256 }),
    username: Type.String({ maxLength: 256 }),
    password: Type.String({ maxLength: 1024 }),
  },
  { additionalProperties: true, description: 'what the broker received in CONNECT (other fields the broker sends are ignored)' },
);
const Authorize = Type.Object(
  {
    clientid: Type.String({ maxLength: 256 }),
    username: Type.String({ maxLength: 256 }),
    topic: Type.String({ maxLength: 1024 }),
    action: Type.Union([Type.Literal('publish'), Type.Literal('subscribe')]),
  },
  { additionalProperties: true, description: 'a PUBLISH or SUBSCRIBE the broker is about to allow' },
);
const Verdict = Type.Object(
  { result: Type.Union([Type.Literal('allow'), Type.Literal('deny')]), is_superuser: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

const digest = (text: string) => createHash('sha256').update(text).digest();
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

export async function registerBrokerHooks(app: FastifyInstance, context: ServerContext): Promise<void> {
  const { config, devices, topics, metrics } = context;
  const secret = config.brokerAuth === 'http' ? config.brokerHookSecret : undefined;

  /** The broker, and only it: before anything of the request is read. */
  const brokerOnly = async (request: FastifyRequest) => {
    if (!secret) {
      throw new EdgefleetError(
        'EF_UNAUTHORIZED',
        'the broker hooks are off: run the server with EDGEFLEET_BROKER_AUTH=http and EDGEFLEET_BROKER_HOOK_SECRET',
      );
    }
    const presented = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1];
    if (!presented || !same(presented, secret)) {
      throw new EdgefleetError('EF_UNAUTHORIZED', 'the broker hooks need Authorization: Bearer <EDGEFLEET_BROKER_HOOK_SECRET>');
    }
  };

  app.post(
    '/v1/broker/authenticate',
    {
      onRequest: brokerOnly,
      schema: {
        summary: 'For the broker: may this CONNECT in? (a device with its own id and secret, or the server itself)',
        body: Authenticate,
        response: { 200: Verdict },
      },
    },
    async (request) => {
      const { clientid, username, password } = request.body as { clientid: string; username: string; password: string };
      if (config.brokerUsername && username === config.brokerUsername) {
        // The server's own replicas, whose subscriptions span every device.
        const ok = config.brokerPassword !== undefined && same(password, config.brokerPassword);
        return ok ? { result: 'allow' as const, is_superuser: true } : { result: 'deny' as const };
      }
      // [MQTT-3.1.3-8] as the embedded broker: the client id is the device's own id.
      if (clientid !== username) {
        metrics.mqttRefused('bad-credentials');
        return { result: 'deny' as const };
      }
      try {
        await devices.verify(username, password);
        return { result: 'allow' as const, is_superuser: false };
      } catch (error) {
        metrics.mqttRefused(error instanceof EdgefleetError ? error.code : 'error');
        if (error instanceof EdgefleetError && (error.code === 'EF_UNAUTHORIZED' || error.code === 'EF_DEVICE_REVOKED')) {
          return { result: 'deny' as const };
        }
        throw error;
      }
    },
  );

  app.post(
    '/v1/broker/authorize',
    {
      onRequest: brokerOnly,
      schema: {
        summary: "For the broker: may this device publish or subscribe to this topic? (its own topics only, as the protocol's table says)",
        body: Authorize,
        response: { 200: Verdict },
      },
    },
    async (request) => {
      const { clientid, username, topic, action } = request.body as { clientid: string; username: string; topic: string; action: string };
      if (config.brokerUsername && username === config.brokerUsername) return { result: 'allow' as const };
      const allowed =
        clientid === username &&
        (action === 'publish' ? topics.deviceMayPublish(username, topic) : topics.deviceMaySubscribe(username, topic));
      if (!allowed) metrics.mqttRefused(action === 'publish' ? 'publish-denied' : 'subscribe-denied');
      return { result: allowed ? ('allow' as const) : ('deny' as const) };
    },
  );
}
