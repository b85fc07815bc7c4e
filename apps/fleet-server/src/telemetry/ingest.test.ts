/**
 * The ingest's own scheduling, on a real database (SQLite; PostgreSQL in the fleet-server-postgres
 * project): what is stored is acknowledged, and storing never waits for acknowledgements to
 * travel. The broker here holds every publish until the test lets it go: that is what an external
 * broker's answers do when they queue behind thousands of device messages on the server's one
 * connection (measured: the next batch then waited for them, and the whole burst was stored in one
 * batch at the end).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { numericProfile, observe, toWire } from '@edgefleet/drift';
import { createTopicScheme, encodeMessageText, type TelemetryAck, type TelemetryWindow } from '@edgefleet/protocol';
import { until } from '@edgefleet/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import type { FleetBroker } from '../broker/index.ts';
import { createMetrics } from '../metrics/index.ts';
import { openDatabase } from '../store/db.ts';
import { createTestPostgresDatabase, dropTestPostgresDatabase } from '../testing.ts';
import { createTelemetryIngest } from './ingest.ts';

const topics = createTopicScheme();
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function window(deviceId: string, seq: number): { message: TelemetryWindow; payload: Uint8Array } {
  const latency = numericProfile();
  for (let i = 0; i < 5; i++) observe(latency, 1 + i);
  const message: TelemetryWindow = {
    type: 'edgefleet.telemetry/v1',
    deviceId,
    bootId: 'b00700000-ingest',
    seq,
    windowStart: '2026-11-29T10:00:00Z',
    windowEnd: '2026-11-29T10:01:00Z',
    model: { name: 'mlp', version: '1.0.0' },
    executionProvider: 'cpu',
    runs: 5,
    errors: [],
    latencyMs: toWire(latency) as TelemetryWindow['latencyMs'],
    features: [],
    dropped: 0,
  };
  const text = encodeMessageText('telemetry', message);
  return { message: JSON.parse(text) as TelemetryWindow, payload: new TextEncoder().encode(text) };
}

/** A broker whose publishes complete only once released; what was published, in order. */
function heldBroker() {
  const published: { deviceId: string; seqs: number[] }[] = [];
  const held: (() => void)[] = [];
  let holding = true;
  const broker = {
    publish: (_topic: string, payload: Uint8Array | string) => {
      const ack = JSON.parse(typeof payload === 'string' ? payload : new TextDecoder().decode(payload)) as TelemetryAck;
      published.push({ deviceId: ack.deviceId, seqs: ack.seqs });
      return holding ? new Promise<void>((resolve) => held.push(resolve)) : Promise.resolve();
    },
  } as unknown as FleetBroker;
  const release = () => {
    holding = false;
    for (const resolve of held.splice(0)) resolve();
  };
  return { broker, published, release, held };
}

/** SQLite, or in the fleet-server-postgres project a PostgreSQL database of its own. */
async function setup(options: { writers?: number; maxBatch?: number } = {}) {
  const databaseUrl = process.env.EDGEFLEET_TEST_SERVER_DATABASE === 'postgres' ? await createTestPostgresDatabase('ingest') : undefined;
  if (databaseUrl) closers.push(() => dropTestPostgresDatabase(databaseUrl));
  const { db, close } = await openDatabase({ dataDir: await mkdtemp(join(tmpdir(), 'ef-ingest-')), databaseUrl });
  closers.push(close);
  const held = heldBroker();
  const ingest = createTelemetryIngest({
    db,
    broker: () => held.broker,
    topics,
    metrics: createMetrics(db),
    log: { warn: () => undefined, debug: () => undefined },
    batchMs: 5,
    dialect: databaseUrl ? 'postgres' : 'sqlite',
    ...options,
  });
  closers.push(async () => {
    held.release();
    await ingest.close();
  });
  const feed = (deviceId: string, seq: number) => {
    const { message, payload } = window(deviceId, seq);
    ingest.observe({ deviceId, kind: 'telemetry' }, message, payload);
  };
  return { db, ingest, feed, ...held };
}

describe('telemetry ingest', () => {
  it('stores the next batch while the acknowledgements of the one before wait for the broker', async () => {
    const { db, ingest, feed, published, held, release } = await setup();
    // A first batch from 300 devices: 300 acknowledgements, none of which the broker completes.
    for (let d = 0; d < 300; d++) feed(`dev-${d}`, 0);
    await until(() => ingest.counts.stored === 300, 'the first batch stored');
    await until(() => published.length > 0, 'its acknowledgements on their way');
    // A second batch: stored now, not once the broker has answered for the first.
    for (let d = 0; d < 300; d++) feed(`dev-${d}`, 1);
    await until(() => ingest.counts.stored === 600, 'the second batch stored while the first one’s acknowledgements are held');
    const rows = await db
      .selectFrom('telemetry_windows')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(rows.n)).toBe(600);
    // The witness: the broker still holds acknowledgements of the first batch.
    expect(held.length).toBeGreaterThan(0);
    // Every window is acknowledged in the end, each once.
    release();
    await until(() => published.reduce((n, p) => n + p.seqs.length, 0) === 600, 'every window acknowledged');
    const acked = published.flatMap((p) => p.seqs.map((seq) => `${p.deviceId}/${seq}`));
    expect(new Set(acked).size).toBe(600);
  });

  it('flush resolves only once the broker has taken every acknowledgement', async () => {
    const { ingest, feed, published, release } = await setup();
    for (let d = 0; d < 40; d++) feed(`dev-${d}`, 0);
    let flushed = false;
    const flushing = ingest.flush().then(() => {
      flushed = true;
    });
    await until(() => published.length === 40, 'the acknowledgements published');
    // The witness: everything was stored and sent, and flush still waits for the broker.
    expect(ingest.counts.stored).toBe(40);
    expect(flushed).toBe(false);
    release();
    await flushing;
    expect(flushed).toBe(true);
  });

  it('writes a backlog as several batches at once, each window stored once and acknowledged, resends in other batches counted once', async () => {
    const { db, ingest, feed, published, release } = await setup({ writers: 3, maxBatch: 200 });
    release();
    // 2,500 windows from 250 devices, and 300 of them sent again further on (lost acknowledgements):
    // a resend lands in another batch than its first copy, some written at the same time.
    let resent = 0;
    for (let seq = 0; seq < 10; seq++) {
      for (let d = 0; d < 250; d++) feed(`dev-${d}`, seq);
      if (seq < 2) continue;
      for (let d = 0; d < 300 / 8; d++, resent++) feed(`dev-${(d * 7 + seq) % 250}`, seq - 2);
    }
    await ingest.flush();
    expect(ingest.counts).toMatchObject({ stored: 2500, duplicates: resent, refused: 0 });
    const rows = await db
      .selectFrom('telemetry_windows')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(rows.n)).toBe(2500);
    const acked = new Set(published.flatMap((p) => p.seqs.map((seq) => `${p.deviceId}/${seq}`)));
    expect(acked.size).toBe(2500);
  });
});
