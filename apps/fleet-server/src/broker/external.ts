/**
 * An external MQTT broker (EDGEFLEET_BROKER_URL): the server is one privileged client of it, and
 * several server replicas can share it.
 *
 * - Devices connect to the broker, not to the server. The broker authenticates them and keeps each
 *   to its own topics by its own mechanism: with `dynsec` the server registers every device with
 *   Mosquitto 2's dynamic-security plugin (dynsec.ts) when it is created or enrolled, and deletes it
 *   on revocation (the broker disconnects it at once); with `http` the broker asks the server's
 *   /v1/broker hooks on every CONNECT, PUBLISH and SUBSCRIBE (EMQX, VerneMQ, HiveMQ: docs/scaling.md).
 * - What devices publish is consumed through shared subscriptions (`$share/edgefleet/…`): each
 *   message reaches one replica, so replicas split the load and nothing is counted twice.
 * - Desired states are published retained, as with the embedded broker; when the connection to the
 *   broker comes back (a broker restart may have lost its retained messages) every device's
 *   current document is published again (`onReconnect`).
 * - MQTT over WebSocket at the server's /mqtt is passed through to the broker's TCP listener, so
 *   browser devices keep their URL (Debian's Mosquitto has no WebSocket listener).
 */
import type { Server as HttpServer, IncomingMessage } from 'node:http';
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { EdgefleetError, type Presence, TOPIC_KINDS, type TopicKind, type TopicScheme } from '@edgefleet/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { ServerConfig } from '../config/index.ts';
import type { ServerMetrics } from '../metrics/index.ts';
import type { WriteBehind } from '../store/write-behind.ts';
import { createDeviceMessageDispatch } from './dispatch.ts';
import {
  admitDevice,
  createDynsecControl,
  DYNSEC_RESPONSE_TOPIC,
  type DynsecAcl,
  type DynsecControl,
  mustRun,
  removeDevice,
  SERVER_ROLE,
  SHARED_GROUP,
  serverAcls,
} from './dynsec.ts';
import { BrokerStoppingError, type FleetBroker } from './index.ts';

export interface ExternalBrokerOptions {
  readonly config: ServerConfig;
  readonly writes: WriteBehind;
  readonly topics: TopicScheme;
  readonly metrics: ServerMetrics;
  /** The HTTP server whose /mqtt path is passed through to the broker. */
  readonly http: HttpServer;
  readonly log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  readonly now?: () => number;
}

const CONNECTED_TOPIC = '$SYS/broker/clients/connected';
/** How long the first connection to the broker may take before the server refuses to start. */
const FIRST_CONNECT_MS = 30_000;

/** Resolves on the client's first CONNACK; a refused login or an unreachable broker rejects, saying which. */
function connected(client: MqttClient, url: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let lastError: Error | undefined;
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new EdgefleetError(
          'EF_BROKER_UNAVAILABLE',
          `could not connect to the MQTT broker at ${url} within ${timeoutMs / 1000} s${lastError ? `: ${lastError.message}` : ''}`,
        ),
      );
    }, timeoutMs);
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (error: Error & { code?: number }) => {
      lastError = error;
      // CONNACK 4/5: wrong credentials; retrying will not help.
      if (error.code === 4 || error.code === 5 || error.code === 134 || error.code === 135) {
        cleanup();
        reject(
          new EdgefleetError(
            'EF_BROKER_UNAVAILABLE',
            `the MQTT broker at ${url} refused the server's login (${error.message}): check EDGEFLEET_BROKER_USERNAME and EDGEFLEET_BROKER_PASSWORD`,
          ),
        );
      }
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off('connect', onConnect);
      client.off('error', onError);
    };
    client.on('connect', onConnect);
    client.on('error', onError);
  });
}

function clientOptions(config: ServerConfig, clientId: string): mqtt.IClientOptions {
  return {
    clientId,
    ...(config.brokerUsername ? { username: config.brokerUsername } : {}),
    ...(config.brokerPassword ? { password: config.brokerPassword } : {}),
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    // mqtt.js logs every packet through `debug`; even switched off, those calls cost a few µs a
    // message at ingest rates. Kept when asked for (DEBUG=mqttjs*).
    ...(/mqttjs/.test(process.env.DEBUG ?? '') ? {} : { log: () => undefined }),
  };
}

/**
 * Gives the server's user the role it needs (once: changing a role makes Mosquitto disconnect every
 * client that holds it, so nothing is changed when it is already right). Runs on a connection of
 * its own, which may be dropped by that very change.
 */
async function ensureServerRole(config: ServerConfig, topics: TopicScheme, log: ExternalBrokerOptions['log']): Promise<void> {
  const url = config.brokerUrl as string;
  const wanted = serverAcls(topics);
  for (let attempt = 0; attempt < 3; attempt++) {
    const client = mqtt.connect(url, clientOptions(config, `edgefleet-setup-${Math.random().toString(36).slice(2, 10)}`));
    try {
      await connected(client, url, FIRST_CONNECT_MS);
      const control = createDynsecControl(client);
      client.on('message', (topic, payload) => {
        if (topic === DYNSEC_RESPONSE_TOPIC) control.handleResponse(payload);
      });
      await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 });
      const [role, user] = await Promise.all([
        control.run({ command: 'getRole', rolename: SERVER_ROLE }),
        control.run({ command: 'getClient', username: config.brokerUsername }),
      ]);
      if (user?.error) throw new EdgefleetError('EF_BROKER_UNAVAILABLE', `the broker does not know the server's user: ${user.error}`);
      const present = new Set(
        ((role?.data as { role?: { acls?: DynsecAcl[] } } | undefined)?.role?.acls ?? []).map((a) => `${a.acltype} ${a.topic} ${a.allow}`),
      );
      const missing = wanted.filter((a) => !present.has(`${a.acltype} ${a.topic} ${a.allow}`));
      const roles = (user?.data as { client?: { roles?: { rolename: string }[] } } | undefined)?.client?.roles ?? [];
      const hasRole = roles.some((r) => r.rolename === SERVER_ROLE);
      if (missing.length === 0 && hasRole) {
        control.close();
        return;
      }
      log.info({ role: SERVER_ROLE, acls: missing.length, addRole: !hasRole }, 'giving the server its role on the broker');
      const changes: Promise<unknown>[] = [];
      if (role?.error) changes.push(mustRun(control, { command: 'createRole', rolename: SERVER_ROLE, acls: wanted }));
      else for (const acl of missing) changes.push(mustRun(control, { command: 'addRoleACL', rolename: SERVER_ROLE, ...acl }));
      if (!hasRole) changes.push(mustRun(control, { command: 'addClientRole', username: config.brokerUsername, rolename: SERVER_ROLE }));
      // The change may disconnect this very client before its answer arrives: either ends the step.
      await Promise.race([Promise.all(changes), new Promise<void>((resolve) => client.once('close', () => resolve()))]);
      control.close();
    } finally {
      await client.endAsync(true).catch(() => undefined);
    }
  }
  throw new EdgefleetError('EF_BROKER_UNAVAILABLE', `could not give the server's user the ${SERVER_ROLE} role on the broker`);
}

export async function createExternalBroker(options: ExternalBrokerOptions): Promise<FleetBroker> {
  const { config, topics, metrics, writes, log } = options;
  const now = options.now ?? Date.now;
  const url = config.brokerUrl;
  if (!url) throw new Error('createExternalBroker needs config.brokerUrl');
  const dispatch = createDeviceMessageDispatch({ topics, metrics, writes, maxPayload: config.mqttMaxPayload, log, now });
  const dynsec = config.brokerAuth === 'dynsec';
  if (dynsec) await ensureServerRole(config, topics, log);

  const replica = `edgefleet-server-${Math.random().toString(36).slice(2, 10)}`;
  const client = mqtt.connect(url, clientOptions(config, replica));
  let control: DynsecControl | undefined;
  let closing = false;
  let brokerClients = 0;
  /** Devices whose last presence this replica saw was online (its share of them). */
  const online = new Set<string>();
  const reconnectListeners = new Set<() => void>();
  let everConnected = false;

  client.on('message', (topic, payload) => {
    if (topic === DYNSEC_RESPONSE_TOPIC) return control?.handleResponse(payload);
    if (topic === CONNECTED_TOPIC) {
      const n = Number(payload.toString());
      if (Number.isFinite(n)) brokerClients = n;
      metrics.setMqttClients(brokerClients);
      return;
    }
    dispatch.fromDevice(topic, payload);
  });
  dispatch.onDeviceMessage((address, _payload, message) => {
    if (address.kind !== 'presence') return;
    if ((message as Presence).state === 'online') online.add(address.deviceId);
    else online.delete(address.deviceId);
  });
  client.on('connect', () => {
    if (!everConnected) {
      everConnected = true;
      return;
    }
    log.info({ broker: url }, 'reconnected to the MQTT broker');
    for (const listener of reconnectListeners) listener();
  });
  client.on('offline', () => {
    if (!closing) log.warn({ broker: url }, 'lost the MQTT broker; reconnecting');
  });
  client.on('error', (error) => log.warn({ broker: url, err: error.message }, 'MQTT broker connection error'));

  await connected(client, url, FIRST_CONNECT_MS);
  const fromDevice = (Object.entries(TOPIC_KINDS) as [TopicKind, (typeof TOPIC_KINDS)[TopicKind]][]).filter(
    ([, spec]) => spec.direction === 'from-device',
  );
  const subscriptions: Record<string, { qos: 0 | 1 }> = { [CONNECTED_TOPIC]: { qos: 0 } };
  // Telemetry at QoS 0: a window is the device's until it gets a telemetry-ack (its outbox sends it
  // again, and it is counted once), so the broker → server hop needs no PUBACK of its own; at QoS 1
  // those PUBACKs cost server and broker about 0.04 ms of CPU a window (measured). A window lost on
  // the way to a replica that dies is sent again by its device (after 30 s) and counted once.
  // Events, reported state and presence are sent once and stay at QoS 1.
  for (const [kind] of fromDevice)
    subscriptions[`$share/${SHARED_GROUP}/${topics.fleetFilter(kind)}`] = { qos: kind === 'telemetry' ? 0 : 1 };
  if (dynsec) {
    control = createDynsecControl(client);
    subscriptions[DYNSEC_RESPONSE_TOPIC] = { qos: 1 };
  }
  const granted = await client.subscribeAsync(subscriptions);
  const refused = granted.filter((g) => g.qos === 128);
  if (refused.length > 0) {
    await client.endAsync(true);
    throw new EdgefleetError(
      'EF_BROKER_UNAVAILABLE',
      `the MQTT broker refused the server's subscriptions to ${refused.map((g) => g.topic).join(', ')}: allow them to ${config.brokerUsername} (docs/scaling.md)`,
    );
  }

  // MQTT over WebSocket at /mqtt: passed through to the broker's own TCP listener.
  const brokerAddress = new URL(url);
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.mqttMaxPayload + 1024 });
  const upstreams = new Set<Socket>();
  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (new URL(request.url ?? '/', 'http://localhost').pathname !== '/mqtt') return;
    wss.handleUpgrade(request, socket, head, (ws) => {
      const downstream = createWebSocketStream(ws);
      const port = Number(brokerAddress.port) || (brokerAddress.protocol === 'mqtts:' ? 8883 : 1883);
      const upstream =
        brokerAddress.protocol === 'mqtts:'
          ? tlsConnect({ host: brokerAddress.hostname, port, servername: brokerAddress.hostname })
          : netConnect({ host: brokerAddress.hostname, port });
      upstreams.add(upstream);
      const end = () => {
        upstreams.delete(upstream);
        upstream.destroy();
        downstream.destroy();
      };
      upstream.on('error', end).on('close', end);
      downstream.on('error', end).on('close', end);
      downstream.pipe(upstream).pipe(downstream);
    });
  };
  options.http.on('upgrade', onUpgrade);

  return {
    async publish(topic, payload, publishOptions = {}) {
      if (closing) throw new BrokerStoppingError(topic);
      await client.publishAsync(
        topic,
        typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
        {
          qos: publishOptions.qos ?? 1,
          retain: publishOptions.retain ?? false,
        },
      );
      dispatch.fromServer(topic);
    },
    async admitDevice(deviceId, secret) {
      // With http auth the broker asks the server at every CONNECT: nothing to register.
      if (control) await admitDevice(control, topics, deviceId, secret);
    },
    async disconnect(deviceId) {
      online.delete(deviceId);
      if (control) await removeDevice(control, deviceId);
    },
    isConnected: (deviceId) => online.has(deviceId),
    onDeviceMessage: dispatch.onDeviceMessage,
    onReconnect(listener) {
      reconnectListeners.add(listener);
      return () => reconnectListeners.delete(listener);
    },
    get connectedCount() {
      return brokerClients;
    },
    get urls() {
      const httpAddress = options.http.address() as AddressInfo | null;
      return { tcp: config.brokerDeviceUrl ?? url, ws: `ws://${config.host}:${httpAddress?.port ?? config.port}/mqtt` };
    },
    async close() {
      closing = true;
      options.http.off('upgrade', onUpgrade);
      for (const ws of wss.clients) ws.terminate();
      for (const upstream of upstreams) upstream.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      control?.close();
      await client.endAsync();
      await writes.flush();
    },
  };
}
