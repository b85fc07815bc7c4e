/**
 * Leases between server replicas (lease.ts), on SQLite and on the tests' PostgreSQL: one holder at
 * a time, a takeover only after expiry, and a stalled holder's writes refused by the fence.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type OpenedDatabase, openDatabase } from '../store/db.ts';
import { createTestPostgresDatabase, dropTestPostgresDatabase } from '../testing.ts';
import { createDatabaseLease } from './lease.ts';

const stores: OpenedDatabase[] = [];
const databases: string[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const url of databases.splice(0)) await dropTestPostgresDatabase(url);
});

async function open(kind: 'sqlite' | 'postgres', count: number): Promise<OpenedDatabase[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-lease-'));
  const url = kind === 'postgres' ? await createTestPostgresDatabase('lease') : undefined;
  if (url) databases.push(url);
  const opened: OpenedDatabase[] = [];
  // One connection pool per replica, on one database.
  for (let i = 0; i < count; i++) opened.push(await openDatabase({ dataDir, ...(url ? { databaseUrl: url } : {}) }));
  stores.push(...opened);
  return opened;
}

describe.each([
  { kind: 'sqlite' as const, skip: false },
  { kind: 'postgres' as const, skip: !process.env.EDGEFLEET_TEST_DATABASE_URL },
])('leases on $kind', ({ kind, skip }) => {
  it.skipIf(skip)(
    'one holder at a time; a takeover only once the lease expired, with a new fence that refuses the old holder',
    async () => {
      const [a, b] = await open(kind, 2);
      let t = 1_000_000;
      const first = createDatabaseLease({ db: (a as OpenedDatabase).db, holder: 'replica-a', ttlMs: 10_000, now: () => t });
      const second = createDatabaseLease({ db: (b as OpenedDatabase).db, holder: 'replica-b', ttlMs: 10_000, now: () => t });
      expect(await first.holds('rollout:r1')).toBe(true);
      expect(await second.holds('rollout:r1')).toBe(false);
      // Another job is another lease.
      expect(await second.holds('drift')).toBe(true);
      t += 9_000;
      expect(await first.holds('rollout:r1')).toBe(true); // renewed until t + 10 s
      t += 9_000;
      expect(await second.holds('rollout:r1')).toBe(false);
      // replica-a stalls: no renewal for longer than the lease.
      t += 11_000;
      expect(await second.holds('rollout:r1')).toBe(true);
      // replica-a wakes up and tries to act on what it decided before the stall.
      await expect((a as OpenedDatabase).db.transaction().execute((trx) => first.check(trx, 'rollout:r1'))).rejects.toMatchObject({
        code: 'EF_LEASE_LOST',
      });
      await (b as OpenedDatabase).db.transaction().execute((trx) => second.check(trx, 'rollout:r1'));
      expect(await first.holds('rollout:r1')).toBe(false);
      const row = await (a as OpenedDatabase).db
        .selectFrom('leases')
        .selectAll()
        .where('name', '=', 'rollout:r1')
        .executeTakeFirstOrThrow();
      expect({ holder: row.holder, fence: Number(row.fence) }).toEqual({ holder: 'replica-b', fence: 2 });
      // A clean shutdown hands over at once.
      await second.release();
      expect(await first.holds('rollout:r1')).toBe(true);
    },
  );

  // SQLite is one server: no race to have.
  if (kind === 'postgres')
    it.skipIf(skip)('gives an expired lease to exactly one of many replicas racing for it', async () => {
      const replicas = await open(kind, 6);
      const t = 5_000_000;
      for (let round = 0; round < 5; round++) {
        // Everyone at once, at a time past the last holder's lease.
        const at = t + round * 20_000;
        const racing = replicas.map((r, i) => createDatabaseLease({ db: r.db, holder: `replica-${i}`, ttlMs: 10_000, now: () => at }));
        const won = await Promise.all(racing.map((lease) => lease.holds('rollout:race')));
        expect(won.filter(Boolean)).toHaveLength(1);
      }
    });
});
