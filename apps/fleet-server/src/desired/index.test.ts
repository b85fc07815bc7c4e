import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MLP_INPUTS, MLP_OUTPUTS, manifestFor, mlpModel } from '@edgefleet/test-utils';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FleetBroker } from '../broker/index.ts';
import { loadOrCreateKeys } from '../keys/index.ts';
import { type OpenedDatabase, openDatabase } from '../store/db.ts';
import { createTestPostgresDatabase, dropTestPostgresDatabase } from '../testing.ts';
import { createDesiredStateService } from './index.ts';

/** A model version mlp@<version> and device dev-1 in a fresh store. */
async function seed(store: OpenedDatabase, keys: Awaited<ReturnType<typeof loadOrCreateKeys>>, versions = ['1.0.0']) {
  const model = mlpModel(1);
  const at = new Date().toISOString();
  await store.db.insertInto('models').values({ name: 'mlp', created_at: at }).execute();
  for (const version of versions) {
    const manifest = manifestFor({ name: 'mlp', version, bytes: model.bytes, inputs: MLP_INPUTS, outputs: MLP_OUTPUTS, key: keys.signing });
    await store.db
      .insertInto('model_versions')
      .values({
        name: 'mlp',
        version,
        sha256: manifest.payload.artifact.sha256,
        size: model.bytes.length,
        manifest: JSON.stringify(manifest),
        metadata: '{}',
        created_at: at,
        created_by: 'test',
      })
      .execute();
  }
  await store.db
    .insertInto('devices')
    .values({ id: 'dev-1', secret_hash: 'x', tags: '[]', status: 'active', created_at: at, last_seen_at: null, online: 0, reported: null })
    .execute();
}

describe('desired state service', () => {
  let store: OpenedDatabase;
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-desired-'));
    store = await openDatabase({ dataDir });
  });
  afterEach(() => store.close());

  it('publishes again, from the store, a document whose publish failed, without writing a new one', async () => {
    const keys = await loadOrCreateKeys(dataDir);
    await seed(store, keys);
    // A broker that refuses the first publish (a hiccup), then delivers.
    const published: { topic: string; payload: string }[] = [];
    let failures = 1;
    const broker = {
      async publish(topic: string, payload: Uint8Array | string) {
        if (failures-- > 0) throw new Error('broker unavailable');
        published.push({ topic, payload: typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8') });
      },
    } as unknown as FleetBroker;
    const warnings: string[] = [];
    const desired = createDesiredStateService({
      db: store.db,
      keys,
      broker: () => broker,
      topic: (id) => `edgefleet/v1/devices/${id}/desired`,
      manifestTtlMs: 90 * 24 * 3600 * 1000,
      retryPublishMs: 10,
      log: { warn: (_obj, msg) => warnings.push(msg) },
    });
    const result = await desired.assignMany(['dev-1'], { set: [{ name: 'mlp', version: '1.0.0' }] }, 'test', 'test');
    expect(result.written).toEqual(['dev-1']);
    expect(warnings).toHaveLength(1);
    // The witness: the same document (sequence 1) arrives once the retry has run.
    const deadline = Date.now() + 5000;
    while (published.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(published).toHaveLength(1);
    expect(JSON.parse(published[0]?.payload ?? '{}').payload.sequence).toBe(1);
    expect((await desired.current('dev-1'))?.payload.sequence).toBe(1);
    desired.stop();
  });
});

describe.skipIf(!process.env.EDGEFLEET_TEST_DATABASE_URL)('desired state from two replicas on one PostgreSQL', () => {
  it('never gives a device two different documents under one sequence number, however the writes race', async () => {
    const url = (await createTestPostgresDatabase('desired')) as string;
    const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-desired-'));
    const keys = await loadOrCreateKeys(dataDir);
    const stores = [await openDatabase({ dataDir, databaseUrl: url }), await openDatabase({ dataDir, databaseUrl: url })];
    try {
      await seed(stores[0] as OpenedDatabase, keys, ['1.0.0', '2.0.0']);
      const published: { sequence: number; body: string }[] = [];
      const broker = {
        async publish(_topic: string, payload: Uint8Array | string) {
          const body = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
          published.push({ sequence: JSON.parse(body).payload.sequence, body });
        },
      } as unknown as FleetBroker;
      const services = stores.map((store) =>
        createDesiredStateService({
          db: store.db,
          keys,
          broker: () => broker,
          topic: (id) => `edgefleet/v1/devices/${id}/desired`,
          manifestTtlMs: 90 * 24 * 3600 * 1000,
          lockDevices: true,
        }),
      );
      // Both replicas change the same device at once, 12 times each, with different versions.
      const rounds = 12;
      await Promise.all(
        services.flatMap((service, i) =>
          Array.from({ length: rounds }, (_, round) =>
            round % 2 === 0
              ? service.assignMany(['dev-1'], { set: [{ name: 'mlp', version: i === 0 ? '1.0.0' : '2.0.0' }] }, `replica-${i}`, 'test')
              : service.assign('dev-1', { set: [{ name: 'mlp', version: i === 0 ? '2.0.0' : '1.0.0' }] }, `replica-${i}`),
          ),
        ),
      );
      const bySequence = new Map<number, Set<string>>();
      for (const { sequence, body } of published) bySequence.set(sequence, (bySequence.get(sequence) ?? new Set()).add(body));
      const clashes = [...bySequence].filter(([, bodies]) => bodies.size > 1).map(([sequence]) => sequence);
      expect(clashes).toEqual([]);
      // Every change got a sequence of its own: 1..24, and the store holds the last.
      expect([...bySequence.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 2 * rounds }, (_, i) => i + 1));
      expect((await services[0]?.current('dev-1'))?.payload.sequence).toBe(2 * rounds);
      for (const service of services) service.stop();
    } finally {
      for (const store of stores) await store.close();
      await dropTestPostgresDatabase(url);
    }
  });
});
