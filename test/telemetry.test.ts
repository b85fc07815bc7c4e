/**
 * Telemetry end to end: real agents with their on-disk outbox, the real server storing windows
 * once each and acknowledging them, a server that is down for a while, replays and forgeries.
 */
import { createFileTelemetryQueue, telemetryMessage } from '@edgefleet/agent';
import { encodeMessage } from '@edgefleet/protocol';
import { mlpModel, seededValues, splitmix } from '@edgefleet/test-utils';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Fleet, type FleetDevice, startFleet, until } from './helpers/fleet.ts';
import { sampleWindow } from './helpers/telemetry.ts';

let fleet: Fleet;
const features = { dtype: 'float32' as const, shape: [1, 4], data: seededValues(4, 5) };

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes, { sampleInputs: [] });
}, 60_000);

afterAll(async () => {
  await fleet?.close();
});

async function deviceWithModel(id: string): Promise<FleetDevice> {
  const device = await fleet.startDevice(id, { tags: ['fleet=telemetry'] });
  await fleet.api('PUT', `/v1/devices/${id}/desired/mlp`, { version: '1.0.0' });
  await until(() => device.activeVersion('mlp') === '1.0.0', `${id} running mlp`);
  return device;
}

async function refusedCount(reason: string): Promise<number> {
  const response = await fleet.server.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const line = response.body.split('\n').find((l) => l.startsWith(`edgefleet_mqtt_refused_total{reason="${reason}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function stored(id: string): Promise<{ seq: number; runs: number; bootId: string }[]> {
  return (await fleet.api('GET', `/v1/telemetry/windows?device=${id}`)).windows;
}

describe('telemetry from devices', () => {
  it('stores every window once, including those closed while the server was down, and the device forgets each only once acknowledged', async () => {
    const device = await deviceWithModel('tele-1');
    const outbox = createFileTelemetryQueue(device.dir);
    for (let i = 0; i < 10; i++) await device.runtime.run('mlp', { features });
    device.runtime.flushTelemetry();
    await until(async () => (await stored('tele-1')).length === 1, 'the first window stored');
    await until(async () => (await outbox.list()).length === 0, 'the outbox emptied by the acknowledgement');
    expect((await stored('tele-1'))[0]).toMatchObject({ seq: 0, runs: 10 });

    await fleet.stopServer();
    for (let i = 0; i < 3; i++) await device.runtime.run('mlp', { features });
    device.runtime.flushTelemetry();
    for (let i = 0; i < 4; i++) await device.runtime.run('mlp', { features });
    device.runtime.flushTelemetry();
    await device.agent.idle();
    // Offline: both windows wait on disk, in order.
    expect((await outbox.list()).map((q) => [q.window.seq, q.window.runs])).toEqual([
      [1, 3],
      [2, 4],
    ]);
    await fleet.startServer();
    await until(async () => (await stored('tele-1')).length === 3, 'the windows closed while offline stored', 30_000);
    await until(async () => (await outbox.list()).length === 0, 'the outbox emptied after the reconnect');
    const windows = await stored('tele-1');
    expect(windows.map((w) => w.seq).sort()).toEqual([0, 1, 2]);
    expect(windows.reduce((sum, w) => sum + w.runs, 0)).toBe(17);
    await device.stop();
  }, 90_000);

  it('a device offline for an hour (compressed time) delivers each of its 60 windows exactly once after reconnecting', async () => {
    let clock = Date.now();
    const device = await fleet.startDevice('tele-hour', { tags: ['fleet=telemetry'], now: () => clock });
    await fleet.api('PUT', '/v1/devices/tele-hour/desired/mlp', { version: '1.0.0' });
    await until(() => device.activeVersion('mlp') === '1.0.0', 'tele-hour running mlp');
    const outbox = createFileTelemetryQueue(device.dir);
    await fleet.stopServer();
    // An hour of service with the server out of reach: three requests a minute, one-minute windows.
    for (let minute = 0; minute < 60; minute++) {
      for (let i = 0; i < 3; i++) await device.runtime.run('mlp', { features });
      clock += 60_000;
    }
    device.runtime.flushTelemetry();
    await device.agent.idle();
    const waiting = await outbox.list();
    expect(waiting.map((q) => q.window.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    await fleet.startServer();
    await until(async () => (await stored('tele-hour')).length === 60, 'the hour of windows stored', 30_000);
    await until(async () => (await outbox.list()).length === 0, 'the outbox emptied');
    const windows = (await fleet.api('GET', '/v1/telemetry/windows?device=tele-hour')).windows as {
      seq: number;
      runs: number;
      windowStart: string;
      windowEnd: string;
    }[];
    expect(new Set(windows.map((w) => w.seq)).size).toBe(60);
    expect(windows.reduce((sum, w) => sum + w.runs, 0)).toBe(180);
    // Each window's latency, from its sketch of the real runs (the device page charts it).
    const latencies = (await fleet.api('GET', '/v1/telemetry/windows?device=tele-hour')).windows as {
      errors: number;
      executionProvider: string;
      latencyMs: { p50: number; p95: number; p99: number; max: number } | null;
    }[];
    for (const w of latencies) {
      expect(w).toMatchObject({ errors: 0, executionProvider: expect.stringMatching(/^(wasm|cpu|webgpu)$/) });
      const l = w.latencyMs as NonNullable<typeof w.latencyMs>;
      expect(l.p50).toBeGreaterThan(0);
      expect(l.p50).toBeLessThanOrEqual(l.p95);
      expect(l.p95).toBeLessThanOrEqual(l.p99);
      expect(l.p99).toBeLessThanOrEqual(l.max);
    }
    const span = Date.parse(windows[0]?.windowEnd ?? '') - Date.parse(windows.at(-1)?.windowStart ?? '');
    expect(span).toBeGreaterThanOrEqual(59 * 60_000);
    // Another restart: the device reconnects with nothing left to send, and nothing is stored twice.
    await fleet.restartServer();
    await until(() => fleet.server.broker.isConnected('tele-hour'), 'tele-hour back', 30_000);
    await device.agent.idle();
    await fleet.server.telemetry.flush();
    expect(await stored('tele-hour')).toHaveLength(60);
    await device.stop();
  }, 120_000);

  it('sends again, on the same connection, a window whose acknowledgement it could not act on, and it is stored once', async () => {
    let failures = 0;
    const device = await fleet.startDevice('tele-resend', {
      tags: ['fleet=telemetry'],
      telemetryResendMs: 300,
      telemetryQueue: (dir) => {
        const queue = createFileTelemetryQueue(dir);
        return {
          append: (window) => queue.append(window),
          list: () => queue.list(),
          takeDropped: () => queue.takeDropped(),
          // The first acknowledgement is lost to a storage error: the window stays queued.
          remove: async (keys) => {
            if (keys.length > 0 && failures++ === 0) throw new Error('EIO: simulated write error');
            await queue.remove(keys);
          },
        };
      },
    });
    await fleet.api('PUT', '/v1/devices/tele-resend/desired/mlp', { version: '1.0.0' });
    await until(() => device.activeVersion('mlp') === '1.0.0', 'tele-resend running mlp');
    const duplicates = fleet.server.telemetry.counts.duplicates;
    for (let i = 0; i < 5; i++) await device.runtime.run('mlp', { features });
    device.runtime.flushTelemetry();
    const outbox = createFileTelemetryQueue(device.dir);
    await until(async () => failures >= 1 && (await outbox.list()).length === 0, 'the window resent and acknowledged again', 10_000);
    expect(failures).toBe(2);
    expect(fleet.server.telemetry.counts.duplicates).toBeGreaterThan(duplicates);
    expect(await stored('tele-resend')).toHaveLength(1);
    await device.stop();
  }, 60_000);

  it('counts a replayed window once and refuses one that names another device', async () => {
    const device = await deviceWithModel('tele-2');
    const secret = (await fleet.api('POST', '/v1/devices', { id: 'tele-forger', tags: ['fleet=telemetry'] })).secret;
    for (let i = 0; i < 5; i++) await device.runtime.run('mlp', { features });
    const [closed] = device.runtime.flushTelemetry();
    await until(async () => (await stored('tele-2')).length === 1, 'the window stored');
    const before = { ...fleet.server.telemetry.counts };
    const refusedBefore = await refusedCount('EF_SCHEMA_INVALID');
    if (!closed) throw new Error('no window to replay');
    const window = (bootId: string, deviceId: string) => telemetryMessage(closed, { deviceId, bootId, seq: 0, dropped: 0 });
    const forger = await mqtt.connectAsync(fleet.server.broker.urls.tcp, {
      clientId: 'tele-forger',
      username: 'tele-forger',
      password: secret,
    });
    // A window naming tele-2, published by tele-forger on its own topic: refused, never stored.
    await forger.publishAsync(
      'edgefleet/v1/devices/tele-forger/telemetry',
      Buffer.from(encodeMessage('telemetry', window('b0f0c0de-0000-4000-8000-000000000000', 'tele-2'))),
      { qos: 1 },
    );
    // The same window twice under the forger's own name: stored once.
    const own = Buffer.from(encodeMessage('telemetry', window('b0f0c0de-0000-4000-8000-000000000001', 'tele-forger')));
    await forger.publishAsync('edgefleet/v1/devices/tele-forger/telemetry', own, { qos: 1 });
    await forger.publishAsync('edgefleet/v1/devices/tele-forger/telemetry', own, { qos: 1 });
    await fleet.server.telemetry.flush();
    await until(() => fleet.server.telemetry.counts.duplicates > before.duplicates, 'the duplicate counted');
    // The broker refuses it at decoding (the payload names another device than the topic) and counts it.
    expect((await refusedCount('EF_SCHEMA_INVALID')) - refusedBefore).toBe(1);
    expect(fleet.server.telemetry.counts.stored - before.stored).toBe(1);
    expect(await stored('tele-forger')).toHaveLength(1);
    expect(await stored('tele-2')).toHaveLength(1);
    await forger.endAsync();
    await device.stop();
  }, 60_000);

  it('refuses malformed, oversized and unreadable telemetry with a code, counts it, and stores none of it', async () => {
    const secret = (await fleet.api('POST', '/v1/devices', { id: 'tele-bad', tags: ['fleet=telemetry'] })).secret;
    const connect = () =>
      mqtt.connectAsync(fleet.server.broker.urls.tcp, { clientId: 'tele-bad', username: 'tele-bad', password: secret, reconnectPeriod: 0 });
    const client = await connect();
    const topic = 'edgefleet/v1/devices/tele-bad/telemetry';
    const bootId = 'b0f0c0de-0000-4000-8000-0000000000bd';
    const good = telemetryMessage({ ...sampleWindow(60), executionProvider: 'wasm' }, { deviceId: 'tele-bad', bootId, seq: 0, dropped: 0 });
    const before = { ...fleet.server.telemetry.counts };
    const jsonRefused = await refusedCount('EF_JSON_INVALID');
    // A profile that passes the schema but cannot be what a device computed (its count does not add up).
    const forged = structuredClone(good) as typeof good & { features: { profile: { n: number } }[] };
    (forged.features[0] as { profile: { n: number } }).profile.n += 1000;
    await client.publishAsync(topic, Buffer.from(encodeMessage('telemetry', { ...forged, seq: 1 })), { qos: 1 });
    // Not JSON at all.
    await client.publishAsync(topic, Buffer.from([0xff, 0xfe, 0x00, 0x01]), { qos: 1 });
    await fleet.server.telemetry.flush();
    await until(() => fleet.server.telemetry.counts.refused > before.refused, 'the malformed profile refused');
    expect(fleet.server.telemetry.counts.refused - before.refused).toBe(1);
    expect((await refusedCount('EF_JSON_INVALID')) - jsonRefused).toBe(1);
    // Above the broker's payload limit (1 MiB): the broker drops the connection; nothing is stored.
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish(topic, Buffer.alloc(1_100_000, 0x20), { qos: 1 });
    await closed;
    expect(await stored('tele-bad')).toHaveLength(0);
    expect(fleet.server.telemetry.counts.stored - before.stored).toBe(0);
    // The device itself is not punished for it: it connects again and a good window is stored.
    const again = await connect();
    await again.publishAsync(topic, Buffer.from(encodeMessage('telemetry', good)), { qos: 1 });
    await until(async () => (await stored('tele-bad')).length === 1, 'the good window stored');
    await again.endAsync();
    client.end(true);
  }, 60_000);

  it('refuses a shadow summary that cannot be what a device compared, so that no rollout gate ever reads it', async () => {
    const secret = (await fleet.api('POST', '/v1/devices', { id: 'tele-shadow', tags: ['fleet=telemetry'] })).secret;
    const client = await mqtt.connectAsync(fleet.server.broker.urls.tcp, {
      clientId: 'tele-shadow',
      username: 'tele-shadow',
      password: secret,
      reconnectPeriod: 0,
    });
    const topic = 'edgefleet/v1/devices/tele-shadow/telemetry';
    const bootId = 'b0f0c0de-0000-4000-8000-0000000000be';
    const base = telemetryMessage(
      { ...sampleWindow(60), executionProvider: 'wasm' },
      { deviceId: 'tele-shadow', bootId, seq: 0, dropped: 0 },
    );
    // A true summary: 60 inputs compared (the latency ratio sketch holds 60 values), 50 of 60 rows agreed.
    const shadow = {
      version: '1.1.0',
      runs: 60,
      skipped: 2,
      errors: 0,
      rows: 60,
      agreed: 50,
      overlap: 55,
      elements: 180,
      maxAbsDiff: 0.5,
      absDiffSum: 9,
      latencyRatio: base.latencyMs,
    };
    const before = { ...fleet.server.telemetry.counts };
    const lies = [
      { ...shadow, agreed: 61 }, // more rows agreed than compared
      { ...shadow, overlap: 1e6 }, // a top-3 overlap above 1 per row
      { ...shadow, runs: 1000 }, // inputs compared that the latency sketch never saw
      { ...shadow, latencyRatio: { ...base.latencyMs, n: base.latencyMs.n + 5 } }, // a sketch that does not add up
    ];
    for (const [i, lie] of lies.entries()) {
      await client.publishAsync(topic, Buffer.from(encodeMessage('telemetry', { ...base, seq: i + 1, shadow: lie })), { qos: 1 });
    }
    // The true one, last: the witness that the ones before it had their chance.
    await client.publishAsync(topic, Buffer.from(encodeMessage('telemetry', { ...base, seq: 10, shadow })), { qos: 1 });
    await until(async () => (await stored('tele-shadow')).length === 1, 'the true summary stored');
    await fleet.server.telemetry.flush();
    expect((await stored('tele-shadow')).map((w) => w.seq)).toEqual([10]);
    expect(fleet.server.telemetry.counts.refused - before.refused).toBe(lies.length);
    await client.endAsync();
  }, 60_000);

  it('builds a reference from a period of telemetry and flags the group whose inputs shifted, and only it', async () => {
    // Every run profiled (profileEveryMs 0): with the default time sample, how many of these fast
    // runs are profiled depends on the machine's speed, and the outcome would no longer be fixed.
    const steady = await fleet.startDevice('drift-a', { tags: ['fleet=drift', 'group=steady'], profileEveryMs: 0 });
    const moving = await fleet.startDevice('drift-b', { tags: ['fleet=drift', 'group=moving'], profileEveryMs: 0 });
    for (const d of [steady, moving]) {
      await fleet.api('PUT', `/v1/devices/${d.id}/desired/mlp`, { version: '1.0.0' });
      await until(() => d.activeVersion('mlp') === '1.0.0', `${d.id} running mlp`);
    }
    // A well-mixed deterministic stream: the outcome of the test is fixed, not a 5% coin. Exact KS
    // of this draw between the two periods: 0.053, a typical value.
    const uniform = splitmix(7);
    const runs = async (device: FleetDevice, count: number, shift: number) => {
      for (let i = 0; i < count; i++) {
        const data = Float32Array.from({ length: 4 }, () => uniform() * 2 - 1 + shift);
        await device.runtime.run('mlp', { features: { dtype: 'float32', shape: [1, 4], data } });
      }
      device.runtime.flushTelemetry();
    };
    const from = new Date(Date.now() - 1000).toISOString();
    await runs(steady, 300, 0);
    await runs(moving, 300, 0);
    await until(async () => (await stored('drift-a')).length + (await stored('drift-b')).length === 2, 'the reference period stored');
    const to = new Date(Date.now() + 1000).toISOString();
    const reference = await fleet.api('POST', '/v1/models/mlp/versions/1.0.0/reference', { from, to, tag: 'fleet=drift' });
    expect(reference).toMatchObject({ windows: 2, runs: 600 });
    expect(reference.features).toContain('features.mean');
    // Later windows must start after the reference period: wait for its end on the clock.
    await until(() => Date.now() > Date.parse(to), 'the reference period to end');
    const since = new Date().toISOString();
    await runs(steady, 300, 0);
    await runs(moving, 300, 0.5);
    await until(async () => (await stored('drift-a')).length + (await stored('drift-b')).length === 4, 'the later windows stored');
    const drift = async (tag: string) =>
      fleet.api('GET', `/v1/drift?model=mlp&version=1.0.0&tag=${encodeURIComponent(tag)}&since=${since}&bucketSeconds=3600`);
    const calm = await drift('group=steady');
    const shifted = await drift('group=moving');
    expect(calm.windows).toHaveLength(1);
    expect(calm.windows[0].drifted).toEqual([]);
    expect(shifted.windows[0].drifted).toContain('features.mean');
    expect(shifted.windows[0].features['features.mean']).toMatchObject({ method: 'ks', drifted: true });
    expect(calm.windows[0].features['features.mean'].drifted).toBe(false);
    // The ad hoc series pages by bucket: one bucket a page gives every bucket of the whole series, once.
    const whole = await fleet.api('GET', `/v1/drift?model=mlp&version=1.0.0&since=${from}&bucketSeconds=1&limit=1000`);
    expect(whole.next).toBeNull();
    expect(whole.windows.length).toBeGreaterThanOrEqual(2);
    const paged: { windowStart: string }[] = [];
    let cursor: string | null = null;
    do {
      const page: { windows: { windowStart: string }[]; next: string | null } = await fleet.api(
        'GET',
        `/v1/drift?model=mlp&version=1.0.0&since=${from}&bucketSeconds=1&limit=1${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.windows).toHaveLength(1);
      paged.push(...page.windows);
      cursor = page.next;
    } while (cursor);
    expect(paged).toEqual(whole.windows);
    const missing = await fleet.server.app.inject({
      method: 'GET',
      url: '/v1/drift?model=mlp&version=9.9.9',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(missing.json()).toMatchObject({ code: 'EF_NOT_FOUND' });
    await steady.stop();
    await moving.stop();
  }, 90_000);
});
