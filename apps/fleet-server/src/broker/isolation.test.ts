/**
 * The broker keeps devices apart, tested with real mqtt.js clients on loopback ports: the embedded
 * broker, and a real Mosquitto 2 the server manages through dynamic security (EDGEFLEET_BROKER_URL)
 * with the same isolation tests. The packet limits are the embedded broker's own (an external
 * broker enforces its own configured limits).
 */
import { connect as connectTcp } from 'node:net';
import { createTopicScheme, encodeMessage, type Presence, type ReportedState } from '@edgefleet/protocol';
import { type Mosquitto, mosquittoMissing, startMosquitto } from '@edgefleet/test-utils/brokers';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerConfig } from '../config/index.ts';
import { startTestServer, type TestServer } from '../testing.ts';

const topics = createTopicScheme();
let server: TestServer;
let mosquitto: Mosquitto | undefined;
const secrets = new Map<string, string>();
const clients: MqttClient[] = [];

type Mode = 'embedded' | 'mosquitto';

/** Where the server's devices connect in a mode: the embedded broker, or Mosquitto the server manages. */
async function brokerConfig(mode: Mode): Promise<Partial<ServerConfig>> {
  if (mode === 'embedded') return {};
  mosquitto = await startMosquitto();
  return { brokerUrl: mosquitto.url, brokerUsername: mosquitto.admin.username, brokerPassword: mosquitto.admin.password };
}

async function setUp(mode: Mode): Promise<void> {
  server = await startTestServer(await brokerConfig(mode));
  for (const id of ['dev-a', 'dev-b', 'dev-c', 'dev-revoked']) {
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/devices',
      headers: server.auth,
      payload: { id, tags: ['line-1'] },
    });
    secrets.set(id, response.json().secret);
  }
}

async function tearDown(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await server.close();
  await mosquitto?.stop();
  mosquitto = undefined;
}

async function device(
  id: string,
  options: { secret?: string; clientId?: string; will?: mqtt.IClientOptions['will']; ws?: boolean } = {},
): Promise<MqttClient> {
  const url = options.ws ? server.broker.urls.ws : server.broker.urls.tcp;
  const client = await mqtt.connectAsync(url, {
    clientId: options.clientId ?? id,
    username: id,
    password: options.secret ?? secrets.get(id) ?? '',
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    ...(options.will ? { will: options.will } : {}),
  });
  clients.push(client);
  return client;
}

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) resolve();
    client.once('close', () => resolve());
  });
}

function nextMessage(client: MqttClient, timeoutMs = 2_000): Promise<{ topic: string; payload: Buffer } | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    client.once('message', (topic, payload) => {
      clearTimeout(timer);
      resolve({ topic, payload });
    });
  });
}

/** Polls until `check` gives a truthy value (an observable outcome), at most 10 s. */
async function waitFor<T>(check: () => T | Promise<T>): Promise<NonNullable<T>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The messages a client receives before a marker the server publishes now on `topic` (one the
 * client subscribed to): the witness for "nothing else was delivered", since the broker delivers
 * to a client in order.
 */
async function receivedUntilMarker(client: MqttClient, topic: string): Promise<string[]> {
  const marker = `marker-${Math.random()}`;
  const received: string[] = [];
  const done = new Promise<void>((resolve) => {
    const onMessage = (_topic: string, payload: Buffer) => {
      if (payload.toString() === marker) {
        client.off('message', onMessage);
        resolve();
      } else received.push(payload.toString());
    };
    client.on('message', onMessage);
  });
  await server.broker.publish(topic, marker, { qos: 1 });
  await done;
  return received;
}

const reported = (deviceId: string): ReportedState => ({
  type: 'edgefleet.reported-state/v1',
  deviceId,
  bootId: '00000000-boot-0001',
  reportedAt: '2026-06-01T00:00:00Z',
  appliedSequence: 0,
  agent: { version: '0.1.0', platform: 'node' },
  capabilities: { executionProviders: ['wasm'] },
  models: [],
});

const presence = (deviceId: string, state: Presence['state']) =>
  Buffer.from(
    encodeMessage('presence', {
      type: 'edgefleet.presence/v1',
      deviceId,
      bootId: '00000000-boot-0001',
      state,
      since: '2026-06-01T00:00:00Z',
    } satisfies Presence),
  );

/**
 * Waits until the broker has handled a device's connection ending (its will included): the
 * embedded broker says so itself; Mosquitto writes it to its log.
 */
async function brokerDropped(id: string): Promise<void> {
  const logged = mosquitto;
  if (!logged) {
    await waitFor(() => !server.broker.isConnected(id));
    return;
  }
  const pattern = new RegExp(`(Client ${id} (closed its connection|has exceeded timeout|disconnected)|Socket error on client ${id})`);
  await waitFor(() => pattern.test(logged.log())).catch((error: Error) => {
    throw new Error(`${error.message}: ${logged.log().slice(-1500)}`);
  });
}

describe.each([
  { mode: 'embedded' as const, skip: undefined },
  { mode: 'mosquitto' as const, skip: mosquittoMissing() },
])('$mode broker isolation', ({ mode, skip }) => {
  if (skip) {
    it.skip(`needs Mosquitto: ${skip}`, () => undefined);
    return;
  }
  // CONNACK for a wrong credential: aedes answers 4 (bad username or password), Mosquitto 5 (not authorized).
  const badCredentials = mode === 'embedded' ? 4 : 5;
  beforeAll(() => setUp(mode));
  afterAll(tearDown);

  it('lets a device in with its own credential, over TCP and WebSocket', async () => {
    const tcp = await device('dev-a');
    expect(tcp.connected).toBe(true);
    const ws = await device('dev-c', { ws: true });
    expect(ws.connected).toBe(true);
    await ws.endAsync();
  });

  it('refuses a wrong secret, and another device id with someone else’s secret', async () => {
    await expect(device('dev-a', { secret: 'wrong' })).rejects.toMatchObject({ code: badCredentials });
    await expect(device('dev-b', { secret: secrets.get('dev-a') ?? '' })).rejects.toMatchObject({ code: badCredentials });
    await expect(device('dev-a', { clientId: 'dev-b' })).rejects.toMatchObject({ code: badCredentials });
    await expect(device('no-such-device', { secret: 'x' })).rejects.toMatchObject({ code: badCredentials });
  });

  it.each(['constructor', '__proto__'])('refuses the client id %j and stays up', async (id) => {
    await expect(device(id, { secret: 'x' })).rejects.toBeDefined();
    expect((await device('dev-c')).connected).toBe(true);
  });

  it('delivers a device its own retained desired state and refuses it another device’s', async () => {
    await server.broker.publish(topics.build('desired', 'dev-b'), '{"for":"b"}', { retain: true });
    await server.broker.publish(topics.build('desired', 'dev-a'), '{"for":"a"}', { retain: true });
    const a = await device('dev-a');
    const own = nextMessage(a);
    const granted = await a.subscribeAsync(topics.build('desired', 'dev-a'), { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    expect((await own)?.payload.toString()).toBe('{"for":"a"}');
    for (const filter of [
      topics.build('desired', 'dev-b'),
      'edgefleet/v1/devices/+/desired',
      '#',
      '$share/g/edgefleet/v1/devices/+/telemetry',
    ]) {
      // SUBACK 0x80: mqtt.js rejects, the connection stays.
      await expect(a.subscribeAsync(filter, { qos: 1 })).rejects.toThrow(/Subscribe error/);
    }
    expect(a.connected).toBe(true);
    // Witness: a message the device may receive, published after the refusals, is the next one it
    // gets; had a refused subscription been granted, dev-b's retained document would have come first.
    expect(await receivedUntilMarker(a, topics.build('desired', 'dev-a'))).toEqual([]);
  });

  it('never delivers what a device publishes as another device or to a server topic (the embedded broker also closes it)', async () => {
    const a = await device('dev-a');
    // No retained document of dev-b's left by an earlier test: anything it receives is a forgery.
    await server.broker.publish(topics.build('desired', 'dev-b'), '', { retain: true });
    const b = await device('dev-b');
    await b.subscribeAsync([topics.build('reported', 'dev-b'), topics.build('desired', 'dev-b')]);
    const spoof = closed(a);
    a.publish(topics.build('reported', 'dev-b'), JSON.stringify(reported('dev-b')), { qos: 1 });
    a.publish(topics.build('desired', 'dev-b'), '{"forged":true}', { qos: 1 });
    if (mode === 'embedded') await spoof;
    expect(await receivedUntilMarker(b, topics.build('desired', 'dev-b'))).toEqual([]);
    const c = await device('dev-c');
    const command = closed(c);
    await c.subscribeAsync(topics.build('desired', 'dev-c'));
    c.publish(topics.build('desired', 'dev-c'), '{"forged":true}', { qos: 1 });
    if (mode === 'embedded') await command;
    else expect(await receivedUntilMarker(c, topics.build('desired', 'dev-c'))).toEqual([]);
    // Nor did the server take dev-b's forged report.
    const view = (await server.app.inject({ method: 'GET', url: '/v1/devices/dev-b', headers: server.auth })).json();
    expect(view.reported).toBeNull();
  });

  it('does not deliver a last will aimed at another device’s topic', async () => {
    await server.broker.publish(topics.build('desired', 'dev-b'), '', { retain: true });
    const b = await device('dev-b');
    await b.subscribeAsync([topics.build('reported', 'dev-b'), topics.build('desired', 'dev-b')]);
    const a = await device('dev-a', {
      will: { topic: topics.build('reported', 'dev-b'), payload: Buffer.from('forged will'), qos: 1, retain: true },
    });
    (a as unknown as { stream: { destroy(): void } }).stream.destroy(); // an ungraceful drop sends the will
    // The broker has handled the drop (and with it the will) once it says dev-a is gone.
    await brokerDropped('dev-a');
    // (the marker goes to a topic the server may publish to: an external broker lets it publish only to-device kinds)
    expect(await receivedUntilMarker(b, topics.build('desired', 'dev-b'))).toEqual([]);
  });

  it('records presence and reported state from a device’s own topics', async () => {
    const a = await device('dev-a');
    await a.publishAsync(topics.build('presence', 'dev-a'), presence('dev-a', 'online'), { qos: 1, retain: true });
    await a.publishAsync(topics.build('reported', 'dev-a'), Buffer.from(encodeMessage('reported', reported('dev-a'))), {
      qos: 1,
      retain: true,
    });
    const view = await waitFor(async () => {
      const current = (await server.app.inject({ method: 'GET', url: '/v1/devices/dev-a', headers: server.auth })).json();
      return current.reported && current.online ? current : undefined;
    });
    expect(view).toMatchObject({ id: 'dev-a', online: true, reported: { appliedSequence: 0, agent: { platform: 'node' } } });
    expect(view.lastSeenAt).toEqual(expect.any(String));
  });

  it('marks a device offline when its connection drops', async () => {
    // As the agent does: online on connect, offline as the will.
    const c = await device('dev-c', {
      will: { topic: topics.build('presence', 'dev-c'), payload: presence('dev-c', 'offline'), qos: 1, retain: true },
    });
    await c.publishAsync(topics.build('presence', 'dev-c'), presence('dev-c', 'online'), { qos: 1, retain: true });
    await waitFor(async () => (await server.app.inject({ method: 'GET', url: '/v1/devices/dev-c', headers: server.auth })).json().online);
    (c as unknown as { stream: { destroy(): void } }).stream.destroy();
    await closed(c);
    const view = await waitFor(async () => {
      const current = (await server.app.inject({ method: 'GET', url: '/v1/devices/dev-c', headers: server.auth })).json();
      return current.online ? undefined : current;
    });
    expect(view.online).toBe(false);
    expect(Date.parse(view.lastSeenAt)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('disconnects a device the moment it is revoked and refuses it afterwards', async () => {
    const doomed = await device('dev-revoked');
    const gone = closed(doomed);
    const response = await server.app.inject({ method: 'POST', url: '/v1/devices/dev-revoked/revoke', headers: server.auth });
    expect(response.json()).toMatchObject({ status: 'revoked' });
    await gone;
    await expect(device('dev-revoked')).rejects.toMatchObject({ code: 5 });
  });

  it('disconnects a deleted device and refuses it; a new device of the same id gets in with its own secret only', async () => {
    const created = (
      await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id: 'dev-reused' } })
    ).json();
    const first = await device('dev-reused', { secret: created.secret });
    const gone = closed(first);
    expect((await server.app.inject({ method: 'DELETE', url: '/v1/devices/dev-reused', headers: server.auth })).statusCode).toBe(204);
    await gone;
    await expect(device('dev-reused', { secret: created.secret })).rejects.toMatchObject({ code: badCredentials });
    const again = (
      await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id: 'dev-reused' } })
    ).json();
    await expect(device('dev-reused', { secret: created.secret })).rejects.toMatchObject({ code: badCredentials });
    expect((await device('dev-reused', { secret: again.secret })).connected).toBe(true);
  });

  it('stays up after garbage bytes, a PUBLISH before CONNECT and a 150-level topic', async () => {
    for (const bytes of [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x62, 0x63]),
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]),
    ]) {
      const url = new URL(server.broker.urls.tcp);
      await new Promise<void>((resolve) => {
        const socket = connectTcp(Number(url.port), url.hostname, () => socket.end(bytes));
        socket.on('close', () => resolve());
        socket.on('error', () => resolve());
      });
    }
    const a = await device('dev-a');
    const deep = Array.from({ length: 150 }, (_, i) => `l${i}`).join('/');
    const granted = await a.subscribeAsync(deep).catch(() => [{ qos: 128 }]);
    expect(granted[0]?.qos).toBe(128);
    expect((await device('dev-c')).connected).toBe(true);
    const health = await server.app.inject({ method: 'GET', url: '/readyz' });
    expect(health.statusCode).toBe(200);
  });

  // Each broker enforces its own limit; the server also drops what is over its own.
  if (mode === 'mosquitto')
    it('drops a device message above EDGEFLEET_MQTT_MAX_PAYLOAD that the broker let through', async () => {
      // A broker of its own (the suite's stays the suite's, and is stopped by it).
      const own = await startMosquitto();
      const small = await startTestServer({
        brokerUrl: own.url,
        brokerUsername: own.admin.username,
        brokerPassword: own.admin.password,
        mqttMaxPayload: 2048,
      });
      try {
        const created = (
          await small.app.inject({ method: 'POST', url: '/v1/devices', headers: small.auth, payload: { id: 'chatty' } })
        ).json();
        const client = await mqtt.connectAsync(small.broker.urls.tcp, {
          clientId: 'chatty',
          username: 'chatty',
          password: created.secret,
          reconnectPeriod: 0,
        });
        clients.push(client);
        const refused = async () =>
          Number(
            /edgefleet_mqtt_refused_total\{reason="payload-too-large"\} (\d+)/.exec(
              (await small.app.inject({ method: 'GET', url: '/metrics', headers: small.auth })).body,
            )?.[1] ?? 0,
          );
        const report = { ...reported('chatty'), padding: 'x'.repeat(4096) };
        await client.publishAsync(topics.build('reported', 'chatty'), JSON.stringify(report), { qos: 1 });
        await waitFor(async () => (await refused()) === 1);
        const view = (await small.app.inject({ method: 'GET', url: '/v1/devices/chatty', headers: small.auth })).json();
        expect(view.reported).toBeNull();
      } finally {
        await small.close();
        await own.stop();
      }
    });

  if (mode === 'embedded')
    it('refuses a payload above the limit by closing the connection', async () => {
      const small = await startTestServer({ mqttMaxPayload: 2048 });
      try {
        const created = (
          await small.app.inject({ method: 'POST', url: '/v1/devices', headers: small.auth, payload: { id: 'chatty' } })
        ).json();
        const client = await mqtt.connectAsync(small.broker.urls.tcp, {
          clientId: 'chatty',
          username: 'chatty',
          password: created.secret,
          reconnectPeriod: 0,
        });
        const gone = closed(client);
        client.publish(topics.build('events', 'chatty'), Buffer.alloc(4096, 1), { qos: 1 });
        await gone;
        await client.endAsync(true);
      } finally {
        await small.close();
      }
    });
});

/** An MQTT 3.1.1 CONNECT packet, built by hand: raw sockets say exactly what an attacker sends. */
function connectPacket(id: string, secret: string, keepalive = 30): Buffer {
  const field = (text: string) => {
    const bytes = Buffer.from(text, 'utf8');
    return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
  };
  const body = Buffer.concat([
    field('MQTT'),
    Buffer.from([4, 0xc2, keepalive >> 8, keepalive & 0xff]), // level 4, username + password + clean session
    field(id),
    field(id),
    field(secret),
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]); // bodies under 128 bytes: one length byte
}

/** 256 MiB as an MQTT remaining length: the largest the encoding allows is 256 MiB - 1. */
const HUGE = [0xff, 0xff, 0xff, 0x7f];

/**
 * Writes `header`, then zeros 1 MiB at a time up to `total`, each write awaited, until the server
 * closes the connection; returns how many bytes the connection took before it was closed.
 */
async function flood(header: Buffer, total: number, before?: (socket: import('node:net').Socket) => Promise<void>): Promise<number> {
  const url = new URL(server.broker.urls.tcp);
  const socket = connectTcp(Number(url.port), url.hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  await before?.(socket);
  let taken = 0;
  const chunk = Buffer.alloc(1024 * 1024);
  const write = (bytes: Buffer) =>
    new Promise<boolean>((resolve) => {
      if (socket.destroyed) return resolve(false);
      socket.write(bytes, (error) => resolve(!error));
    });
  if (await write(header)) {
    while (taken < total && (await write(chunk))) taken += chunk.length;
  }
  await gone;
  return taken;
}

async function refusedCount(reason: string): Promise<number> {
  const text = (await server.app.inject({ method: 'GET', url: '/metrics', headers: server.auth })).body;
  return Number(new RegExp(`edgefleet_mqtt_refused_total\\{reason="${reason}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
}

describe('embedded broker limits (THREATS 18)', () => {
  beforeAll(() => setUp('embedded'));
  afterAll(tearDown);

  it('closes a connection whose CONNECT declares 256 MiB as soon as the fixed header is read, before authentication', async () => {
    const before = await refusedCount('packet-too-large');
    const taken = await Promise.all(Array.from({ length: 4 }, () => flood(Buffer.from([0x10, ...HUGE]), 64 * 1024 * 1024)));
    // What the kernel's socket buffers absorbed, not what the broker read: far below what was sent.
    for (const bytes of taken) expect(bytes).toBeLessThan(32 * 1024 * 1024);
    expect(await refusedCount('packet-too-large')).toBe(before + 4);
    expect((await device('dev-a')).connected).toBe(true);
  });

  it('closes an authenticated device whose PUBLISH declares 256 MiB as soon as the fixed header is read', async () => {
    const before = await refusedCount('packet-too-large');
    const taken = await flood(Buffer.from([0x32, ...HUGE]), 64 * 1024 * 1024, async (socket) => {
      const connack = new Promise<Buffer>((resolve) => socket.once('data', resolve));
      socket.write(connectPacket('dev-b', secrets.get('dev-b') ?? ''));
      expect([...(await connack)]).toEqual([0x20, 0x02, 0x00, 0x00]); // CONNACK, accepted
    });
    expect(taken).toBeLessThan(32 * 1024 * 1024);
    expect(await refusedCount('packet-too-large')).toBe(before + 1);
  });

  it('refuses a flood of bad credentials from one address before checking them, the right secret too, until its minute ends', async () => {
    const strict = await startTestServer({ authFailuresPerMinute: 3 });
    try {
      const { secret } = (
        await strict.app.inject({ method: 'POST', url: '/v1/devices', headers: strict.auth, payload: { id: 'flooded' } })
      ).json();
      const attempt = (password: string) =>
        mqtt.connectAsync(strict.broker.urls.tcp, { clientId: 'flooded', username: 'flooded', password, reconnectPeriod: 0 });
      for (let i = 0; i < 3; i++) await expect(attempt(`guess-${i}`)).rejects.toMatchObject({ code: 4 });
      await expect(attempt(secret)).rejects.toMatchObject({ code: 4 });
      // The limit is per address, HTTP and MQTT alike: read the metrics from another one.
      const metrics = (await strict.app.inject({ method: 'GET', url: '/metrics', headers: strict.auth, remoteAddress: '10.1.2.3' })).body;
      expect(metrics).toMatch(/edgefleet_mqtt_refused_total\{reason="rate-limited"\} 1/);
    } finally {
      await strict.close();
    }
  });

  it.each([0, 1201, 65_535])(
    'accepts keepalive %i, as MQTT 3.1.1 allows (0 turns it off), answering only defined return codes',
    async (keepalive) => {
      const client = await mqtt.connectAsync(server.broker.urls.tcp, {
        clientId: 'dev-b',
        username: 'dev-b',
        password: secrets.get('dev-b') ?? '',
        protocolVersion: 4,
        reconnectPeriod: 0,
        keepalive,
      });
      clients.push(client);
      expect(client.connected).toBe(true);
      await client.endAsync();
    },
  );
});
