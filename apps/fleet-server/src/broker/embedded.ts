/**
 * The embedded broker: aedes (MQTT 3.1.1) over TCP and over WebSocket (/mqtt on the HTTP server).
 *
 * Security model: every connection authenticates as a device (client id = username = device id,
 * password = the device secret); each device may publish only to its own device→server topics and
 * subscribe only to its own server→device topics (+ its own retained reported state), as the
 * protocol's topic table says. Wills are authorized like publishes (aedes runs authorizePublish on
 * them). The server publishes through the broker object itself, never as a client.
 */
import { type AddressInfo, createServer as createNetServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { EdgefleetError, type TopicScheme } from '@edgefleet/protocol';
import { Aedes, type Client } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { FailureLimiter } from '../auth/index.ts';
import type { ServerConfig } from '../config/index.ts';
import type { DeviceAuthenticator } from '../devices/credentials.ts';
import type { ServerMetrics } from '../metrics/index.ts';
import type { WriteBehind } from '../store/write-behind.ts';
import { createDeviceMessageDispatch } from './dispatch.ts';
import { BrokerStoppingError, type FleetBroker } from './index.ts';
import { guardConnection, type PacketLimits, type PacketScanner } from './packet-guard.ts';
import { indexRetainedByTopic, type RetainedPersistence } from './retained-index.ts';

export interface EmbeddedBrokerOptions {
  readonly config: ServerConfig;
  /** Presence, last seen and reported state are written through this, batched. */
  readonly writes: WriteBehind;
  readonly topics: TopicScheme;
  readonly devices: DeviceAuthenticator;
  readonly metrics: ServerMetrics;
  /** The HTTP server whose /mqtt path carries MQTT over WebSocket. */
  readonly http: import('node:http').Server;
  readonly log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  /** Failed logins per address, shared with the HTTP API: a flood is refused before any lookup. */
  readonly failures: FailureLimiter;
  /** The server's clock (last-seen times). */
  readonly now?: () => number;
}

const BROKER_DEFAULTS = {
  // A client that sends no CONNECT within 10 s is dropped: half-open sockets cost memory.
  connectTimeout: 10_000,
  // One stuck subscriber must not stall delivery to the others (aedes waits for drain otherwise).
  drainTimeout: 10_000,
  // Our topics have 5 levels plus a root of up to 4; 16 leaves room and refuses 150-level junk.
  maxTopicLevels: 16,
  // Device ids are up to 64 characters and are the client id.
  maxClientsIdLength: 64,
  // No keepaliveLimit: aedes refuses keepalives above it, and 0, with CONNACK code 6, which MQTT
  // 3.1.1 does not define ([MQTT-3.2.2-6] allows 0-5 only). A client's keepalive is honoured as it
  // declares it (0 turns it off, [MQTT-3.1.2-10]); TCP keepalive reaps dead peers instead.
} as const;

/**
 * Packet size limits read from each fixed header (broker/packet-guard.ts). A CONNECT holds a
 * client id, username and password of a few dozen bytes and a presence will of ~200: 8 KiB is
 * plenty, and nothing larger is read from a connection that has not authenticated.
 */
const CONNECT_LIMIT = 8 * 1024;
/** Room for a PUBLISH's topic (ours are under 200 bytes) and packet id beside its payload. */
const PUBLISH_OVERHEAD = 1024;
/** SUBSCRIBE, UNSUBSCRIBE and acknowledgements: our devices subscribe to two topics. */
const OTHER_LIMIT = 64 * 1024;
/** Dead peers (keepalive 0, or a cable pulled) are found by TCP within minutes. */
const TCP_KEEPALIVE_MS = 60_000;

function authError(message: string, returnCode: 4 | 5): Error & { returnCode: 4 | 5 } {
  return Object.assign(new Error(message), { returnCode });
}

export async function createEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<FleetBroker> {
  const { topics, devices, metrics, writes, config, log, failures } = options;
  const now = options.now ?? Date.now;
  const clients = new Map<string, Client>();
  let closing = false;
  /** Each connection's packet guard and peer address (aedes keeps the stream as client.conn). */
  const guards = new WeakMap<Duplex, { scanner: PacketScanner; address: string }>();
  const dispatch = createDeviceMessageDispatch({ topics, metrics, writes, maxPayload: config.mqttMaxPayload, log, now });
  const { recordDevice } = dispatch;

  const aedes = await Aedes.createBroker({
    ...BROKER_DEFAULTS,
    authenticate(client, username, password, done) {
      // [MQTT-3.1.3-8] the client id identifies the session: it must be the device's own id.
      if (!username || !password || client.id !== username) {
        metrics.mqttRefused('bad-credentials');
        done(authError('client id and username must be the device id, with its secret as password', 4), false);
        return;
      }
      const guard = guards.get(client.conn as Duplex);
      const address = guard?.address ?? 'unknown';
      try {
        failures.check(address);
      } catch (error) {
        metrics.mqttRefused('rate-limited');
        done(authError((error as Error).message, 4), false);
        return;
      }
      devices.verify(username, password.toString('utf8')).then(
        () => {
          // From now on the connection may carry packets up to the payload limit.
          if (guard) guard.scanner.authenticated = true;
          done(null, true);
        },
        (error: unknown) => {
          if (error instanceof EdgefleetError && error.code === 'EF_UNAUTHORIZED') failures.failed(address);
          metrics.mqttRefused(error instanceof EdgefleetError ? error.code : 'error');
          done(
            authError(
              error instanceof Error ? error.message : 'refused',
              error instanceof EdgefleetError && error.code === 'EF_DEVICE_REVOKED' ? 5 : 4,
            ),
            false,
          );
        },
      );
    },
    authorizePublish(client, packet, done) {
      if (!client) return done(null); // the server's own publishes
      if (packet.payload.length > config.mqttMaxPayload) {
        metrics.mqttRefused('payload-too-large');
        return done(new Error(`payload of ${packet.payload.length} bytes is above the limit of ${config.mqttMaxPayload}`));
      }
      if (!topics.deviceMayPublish(client.id, packet.topic)) {
        metrics.mqttRefused('publish-denied');
        return done(new Error(`device ${client.id} may not publish to ${packet.topic}`));
      }
      done(null);
    },
    authorizeSubscribe(client, subscription, done) {
      if (!topics.deviceMaySubscribe(client.id, subscription.topic)) {
        metrics.mqttRefused('subscribe-denied');
        // A null subscription answers SUBACK 0x80 (failure) and keeps the connection.
        return done(null, null);
      }
      done(null, subscription);
    },
  });
  // Each device subscribes to its own exact topics: find their retained messages by name, not by
  // testing every device's (see retained-index.ts).
  indexRetainedByTopic((aedes as unknown as { persistence: RetainedPersistence }).persistence);

  aedes.on('client', (client) => {
    clients.set(client.id, client);
    metrics.setMqttClients(aedes.connectedClients);
    recordDevice(client.id, { online: 1 });
  });
  aedes.on('clientDisconnect', (client) => {
    metrics.setMqttClients(aedes.connectedClients);
    // A reconnect with the same id takes the session over: the old connection closing must not
    // mark the device offline.
    if (clients.get(client.id) !== client) return;
    clients.delete(client.id);
    recordDevice(client.id, { online: 0 });
  });
  aedes.on('publish', (packet, client) => {
    if (packet.topic.startsWith('$SYS')) return;
    if (!client) return dispatch.fromServer(packet.topic);
    dispatch.fromDevice(packet.topic, typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload);
  });
  aedes.on('clientError', (client, error) => log.info({ deviceId: client.id, err: error.message }, 'mqtt client error'));
  aedes.on('connectionError', (_client, error) => log.info({ err: error.message }, 'mqtt connection error'));

  const limits: PacketLimits = {
    beforeAuthentication: CONNECT_LIMIT,
    publish: config.mqttMaxPayload + PUBLISH_OVERHEAD,
    other: OTHER_LIMIT,
  };
  /** Every connection reaches aedes through the packet guard. */
  const handle = (stream: Duplex, address: string | undefined, request?: import('node:http').IncomingMessage) => {
    const scanner = guardConnection(stream, limits, (verdict) => {
      metrics.mqttRefused(verdict.reason);
      log.info({ reason: verdict.reason, err: verdict.message }, 'mqtt connection refused');
    });
    guards.set(stream, { scanner, address: address ?? 'unknown' });
    aedes.handle(stream, request as never);
  };
  const tcp: Server = createNetServer((socket) => {
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    handle(socket, socket.remoteAddress);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(config.mqttPort, config.host, () => resolve());
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.mqttMaxPayload + 1024 });
  const onUpgrade = (request: import('node:http').IncomingMessage, socket: import('node:stream').Duplex, head: Buffer) => {
    if (new URL(request.url ?? '/', 'http://localhost').pathname !== '/mqtt') return;
    if ('setKeepAlive' in socket) (socket as import('node:net').Socket).setKeepAlive(true, TCP_KEEPALIVE_MS);
    wss.handleUpgrade(request, socket, head, (ws) => handle(createWebSocketStream(ws), request.socket.remoteAddress, request));
  };
  options.http.on('upgrade', onUpgrade);
  const tcpPort = (tcp.address() as AddressInfo).port;

  return {
    async publish(topic, payload, publishOptions = {}) {
      // Once closing, aedes' emitter may already be closed ("mqemitter is closed"): say why instead.
      if (closing) throw new BrokerStoppingError(topic);
      await new Promise<void>((resolve, reject) =>
        aedes.publish(
          {
            cmd: 'publish',
            topic,
            payload:
              typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
            qos: publishOptions.qos ?? 1,
            retain: publishOptions.retain ?? false,
            dup: false,
          },
          (error) => (error ? reject(error) : resolve()),
        ),
      );
    },
    async disconnect(deviceId) {
      const client = clients.get(deviceId);
      if (client) await new Promise<void>((resolve) => client.close(() => resolve()));
    },
    isConnected: (deviceId) => clients.has(deviceId),
    onDeviceMessage: dispatch.onDeviceMessage,
    onReconnect: () => () => undefined,
    async admitDevice() {
      // Devices authenticate against the database on every CONNECT: nothing to register.
    },
    get connectedCount() {
      return aedes.connectedClients;
    },
    get urls() {
      const httpAddress = options.http.address() as AddressInfo | null;
      return { tcp: `mqtt://${config.host}:${tcpPort}`, ws: `ws://${config.host}:${httpAddress?.port ?? config.port}/mqtt` };
    },
    async close() {
      closing = true;
      // Stop accepting first (a device reconnecting at once must be refused, not handed to a
      // broker that is closing), then end every connection, then wait for the listener.
      options.http.off('upgrade', onUpgrade);
      const listenerClosed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await listenerClosed;
      await writes.flush();
    },
  };
}
