/**
 * Counts a device sends are integers up to 2^53 - 1 (the protocol's Count): a window's sequence
 * number, its runs, the windows it dropped, an event's sequence number. Each must be stored and
 * answered as sent on both databases. On PostgreSQL a 32-bit column refused one such value, and
 * with it the whole batch it was written in: every other device's windows of that batch went
 * unacknowledged (and came back, with the poison, again and again), and the batch's events were
 * lost. Runs on SQLite and, in the fleet-server-postgres project, on PostgreSQL.
 */
import { numericProfile, observe, toWire } from '@edgefleet/drift';
import { createTopicScheme, type DeviceEvent, encodeMessageText, type TelemetryAck, type TelemetryWindow } from '@edgefleet/protocol';
import { until } from '@edgefleet/test-utils';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing.ts';

const topics = createTopicScheme();
const BOOT = 'b00700000-wide-counts';
let server: TestServer;
const clients: mqtt.MqttClient[] = [];

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  for (const client of clients) await client.endAsync();
  await server?.close();
});

async function api(method: string, url: string, payload?: unknown) {
  const response = await server.app.inject({ method: method as 'GET', url, headers: server.auth, ...(payload ? { payload } : {}) });
  expect(response.statusCode, `${method} ${url}: ${response.body}`).toBeLessThan(300);
  return response.json();
}

/** A device on the broker, collecting its telemetry acknowledgements. */
async function device(id: string): Promise<{ client: mqtt.MqttClient; acked: Set<number> }> {
  const { secret } = await api('POST', '/v1/devices', { id });
  const client = await mqtt.connectAsync(server.broker.urls.tcp, { clientId: id, username: id, password: secret, protocolVersion: 4 });
  clients.push(client);
  const acked = new Set<number>();
  client.on('message', (_topic, payload) => {
    for (const seq of (JSON.parse(payload.toString()) as TelemetryAck).seqs) acked.add(seq);
  });
  await client.subscribeAsync(topics.build('telemetry-ack', id), { qos: 1 });
  return { client, acked };
}

function window(deviceId: string, seq: number, runs: number, dropped: number): TelemetryWindow {
  const latency = numericProfile();
  for (let i = 0; i < 10; i++) observe(latency, 1 + i / 10);
  return {
    type: 'edgefleet.telemetry/v1',
    deviceId,
    bootId: BOOT,
    seq,
    windowStart: '2026-11-29T10:00:00Z',
    windowEnd: '2026-11-29T10:01:00Z',
    model: { name: 'mlp', version: '1.0.0' },
    executionProvider: 'cpu',
    runs,
    errors: [],
    latencyMs: toWire(latency) as TelemetryWindow['latencyMs'],
    features: [],
    dropped,
  };
}

describe('counts beyond 32 bits from devices', () => {
  it('stores, acknowledges and lists a window whose seq, runs and dropped pass 2^31, and the windows written with it', async () => {
    const wide = await device('wide-1');
    const plain = await device('plain-1');
    const big = { seq: 2 ** 31 + 7, runs: 2 ** 32 + 3, dropped: Number.MAX_SAFE_INTEGER };
    // Published together: the ingest writes them in one batch.
    await Promise.all([
      wide.client.publishAsync(
        topics.build('telemetry', 'wide-1'),
        encodeMessageText('telemetry', window('wide-1', big.seq, big.runs, big.dropped)),
        { qos: 1 },
      ),
      plain.client.publishAsync(topics.build('telemetry', 'plain-1'), encodeMessageText('telemetry', window('plain-1', 1, 10, 0)), {
        qos: 1,
      }),
    ]);
    await until(() => wide.acked.has(big.seq) && plain.acked.has(1), 'both windows acknowledged');
    const { windows } = await api('GET', '/v1/telemetry/windows?device=wide-1');
    expect(windows).toEqual([expect.objectContaining({ deviceId: 'wide-1', seq: big.seq, runs: big.runs, dropped: big.dropped })]);
    expect((await api('GET', '/v1/telemetry/windows?device=plain-1')).windows).toEqual([
      expect.objectContaining({ deviceId: 'plain-1', seq: 1, runs: 10 }),
    ]);
    // Sent again (a lost acknowledgement): counted once.
    await wide.client.publishAsync(
      topics.build('telemetry', 'wide-1'),
      encodeMessageText('telemetry', window('wide-1', big.seq, big.runs, big.dropped)),
      { qos: 1 },
    );
    await server.telemetry.flush();
    expect(server.telemetry.counts).toMatchObject({ stored: 2, duplicates: 1, refused: 0 });
    expect((await api('GET', '/v1/telemetry/windows?device=wide-1')).windows).toHaveLength(1);
  });

  it('keeps an event whose seq passes 2^31 in the device history, and the events written with it', async () => {
    const wide = await device('wide-2');
    const plain = await device('plain-2');
    const event = (deviceId: string, seq: number): DeviceEvent => ({
      type: 'edgefleet.event/v1',
      deviceId,
      bootId: BOOT,
      seq,
      at: '2026-11-29T10:00:00Z',
      kind: 'desired-state-received',
    });
    const wideSeq = 2 ** 40 + 1;
    await Promise.all([
      wide.client.publishAsync(topics.build('events', 'wide-2'), encodeMessageText('events', event('wide-2', wideSeq)), { qos: 1 }),
      plain.client.publishAsync(topics.build('events', 'plain-2'), encodeMessageText('events', event('plain-2', 3)), { qos: 1 }),
    ]);
    // The broker hands a message on after its PUBACK: wait until the server has taken both.
    await until(async () => {
      const [a, b] = await Promise.all([api('GET', '/v1/devices/wide-2/history'), api('GET', '/v1/devices/plain-2/history')]);
      return a.events.length + b.events.length === 2;
    }, 'both events in the history');
    expect((await api('GET', '/v1/devices/wide-2/history')).events).toEqual([
      expect.objectContaining({ kind: 'desired-state-received', seq: wideSeq }),
    ]);
  });
});
