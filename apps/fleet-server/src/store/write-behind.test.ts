import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type OpenedDatabase, openDatabase } from './db.ts';
import { createWriteBehind } from './write-behind.ts';

/** Active devices with these ids, nothing reported yet. */
function insertDevices(store: OpenedDatabase, ids: readonly string[]) {
  return store.db
    .insertInto('devices')
    .values(
      ids.map((id) => ({
        id,
        secret_hash: 'sha256$00',
        tags: '[]',
        status: 'active' as const,
        created_at: new Date().toISOString(),
        last_seen_at: null,
        online: 0,
        reported: null,
      })),
    )
    .execute();
}

describe('write-behind for device updates', () => {
  let store: OpenedDatabase;
  const warnings: object[] = [];
  const log = { warn: (obj: object) => warnings.push(obj) };
  beforeEach(async () => {
    warnings.length = 0;
    store = await openDatabase({ dataDir: await mkdtemp(join(tmpdir(), 'edgefleet-write-behind-')) });
    await insertDevices(
      store,
      Array.from({ length: 50 }, (_, i) => `dev-${i}`),
    );
  });
  afterEach(() => store.close());

  const device = (id: string) => store.db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  it('merges updates of one device and writes many devices in one batch', async () => {
    const writes = createWriteBehind(store.db, { intervalMs: 10_000, log });
    const batches: (readonly string[])[] = [];
    writes.onFlushed((keys) => batches.push(keys));
    for (let i = 0; i < 50; i++) {
      const id = `dev-${i}`;
      const write = (trx: Parameters<Parameters<typeof writes.update>[2]>[0], set: Record<string, unknown>) =>
        trx.updateTable('devices').set(set).where('id', '=', id).execute();
      writes.update(id, { online: 1, last_seen_at: '2026-01-01T00:00:00.000Z' }, write);
      writes.update(id, { reported: `{"n":${i}}`, last_seen_at: '2026-01-02T00:00:00.000Z' }, write);
    }
    expect(writes.pending).toBe(50);
    // Nothing reaches the database before the flush.
    expect((await device('dev-7')).online).toBe(0);
    await writes.flush();
    expect(batches).toHaveLength(1);
    expect(batches[0]).toHaveLength(50);
    const row = await device('dev-7');
    expect(row).toMatchObject({ online: 1, reported: '{"n":7}', last_seen_at: '2026-01-02T00:00:00.000Z' });
    await writes.close();
  });

  it('writes on its own within the interval, and everything queued before close', async () => {
    const writes = createWriteBehind(store.db, { intervalMs: 5, log });
    writes.update('dev-1', { online: 1 }, (trx, set) => trx.updateTable('devices').set(set).where('id', '=', 'dev-1').execute());
    for (let i = 0; i < 100 && (await device('dev-1')).online !== 1; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await device('dev-1')).online).toBe(1);
    writes.update('dev-2', { online: 1 }, (trx, set) => trx.updateTable('devices').set(set).where('id', '=', 'dev-2').execute());
    await writes.close();
    expect((await device('dev-2')).online).toBe(1);
  });

  it('reports a batch it could not write and keeps writing the next ones', async () => {
    const writes = createWriteBehind(store.db, { intervalMs: 10_000, log });
    writes.update('bad', { nope: 1 }, (trx, set) =>
      trx
        .updateTable('devices')
        .set(set as never)
        .where('id', '=', 'dev-3')
        .execute(),
    );
    await writes.flush();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ updates: 1 });
    writes.update('dev-3', { online: 1 }, (trx, set) => trx.updateTable('devices').set(set).where('id', '=', 'dev-3').execute());
    await writes.flush();
    expect((await device('dev-3')).online).toBe(1);
    await writes.close();
  });

  it('commits its batches without an fsync but leaves every other commit durable (synchronous=FULL)', async () => {
    const writes = createWriteBehind(store.db, { intervalMs: 10_000, log });
    const level = async () => (await sql<{ synchronous: number }>`pragma synchronous`.execute(store.db)).rows[0]?.synchronous;
    expect(await level()).toBe(2);
    writes.update('dev-4', { online: 1 }, async (trx, set) => {
      // Inside the batch: NORMAL (1), no fsync on this commit.
      expect((await sql<{ synchronous: number }>`pragma synchronous`.execute(trx)).rows[0]?.synchronous).toBe(1);
      await trx.updateTable('devices').set(set).where('id', '=', 'dev-4').execute();
    });
    await writes.flush();
    expect(warnings).toEqual([]);
    expect((await device('dev-4')).online).toBe(1);
    expect(await level()).toBe(2);
    // A failing batch restores it too.
    writes.update('bad', { nope: 1 }, (trx, set) =>
      trx
        .updateTable('devices')
        .set(set as never)
        .where('id', '=', 'dev-4')
        .execute(),
    );
    await writes.flush();
    expect(await level()).toBe(2);
    await writes.close();
  });
});

describe.skipIf(!process.env.EDGEFLEET_TEST_DATABASE_URL)('write-behind of two replicas on one PostgreSQL', () => {
  it('loses no batch when both update the same devices at once, in opposite orders', async () => {
    const { createTestPostgresDatabase, dropTestPostgresDatabase } = await import('../testing.ts');
    const url = (await createTestPostgresDatabase('writebehind')) as string;
    const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-write-behind-'));
    const stores = [await openDatabase({ dataDir, databaseUrl: url }), await openDatabase({ dataDir, databaseUrl: url })];
    const warnings: object[] = [];
    try {
      const ids = Array.from({ length: 40 }, (_, i) => `dev-${String(i).padStart(2, '0')}`);
      await insertDevices(stores[0] as OpenedDatabase, ids);
      const writers = stores.map((store) =>
        createWriteBehind(store.db, { intervalMs: 10_000, dialect: 'postgres', log: { warn: (obj: object) => warnings.push(obj) } }),
      );
      // 10 rounds: replica 0 queues the devices in one order, replica 1 in the other, and both commit at once.
      for (let round = 1; round <= 10; round++) {
        writers.forEach((writes, w) => {
          for (const id of w === 0 ? ids : [...ids].reverse()) {
            writes.update(`device:${id}`, { last_seen_at: `2026-11-29T00:00:${String(round).padStart(2, '0')}.00${w}Z` }, (trx, set) =>
              trx.updateTable('devices').set(set).where('id', '=', id).execute(),
            );
          }
        });
        await Promise.all(writers.map((writes) => writes.flush()));
      }
      expect(warnings).toEqual([]);
      const seen = await stores[0]?.db.selectFrom('devices').select('last_seen_at').execute();
      expect(seen?.every((row) => row.last_seen_at?.startsWith('2026-11-29T00:00:10'))).toBe(true);
      for (const writes of writers) await writes.close();
    } finally {
      for (const store of stores) await store.close();
      await dropTestPostgresDatabase(url);
    }
  });
});
