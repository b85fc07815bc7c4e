/**
 * Who drives a rollout (or the drift pass). With several server replicas on one PostgreSQL, only
 * the holder of a job's lease may advance it; one server alone holds every lease.
 *
 * A lease is a row: `leases(name, holder, fence, expires_at)`. `holds(name)` renews it for its
 * holder, or takes it over once it expired, in one conditional UPDATE (PostgreSQL's row lock makes
 * two replicas racing for an expired lease see each other: the second finds it taken). Every
 * takeover increments the fence. Writes that act on the lease check it inside their own
 * transaction (`check`): a replica that stalled past its lease (a long GC pause, a frozen VM) and
 * wakes up finds the fence moved and its write refused, instead of driving the rollout beside the
 * new holder. The check is an UPDATE too, so it holds the lease row until the write commits: a
 * takeover waits for it.
 *
 * Time is each replica's wall clock: replicas need synchronized clocks (NTP), off by much less than
 * the lease's time to live (10 s by default; a dead holder is replaced within it).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { EdgefleetError } from '@edgefleet/protocol';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/schema.ts';

export interface RolloutLease {
  /** True when this server may drive the job now (acquiring or renewing its lease). */
  holds(name: string): Promise<boolean>;
  /**
   * Inside a transaction that acts on the lease: throws EF_LEASE_LOST unless this server still
   * holds it with the fence it took it with (held until the transaction ends).
   */
  check(trx: Transaction<Database>, name: string): Promise<void>;
  /** Who this server is, as leases record it. */
  readonly holder: string;
  /** Gives up every lease held (a clean shutdown: another replica takes over at once). */
  release(): Promise<void>;
}

export const singleServerLease: RolloutLease = {
  holds: async () => true,
  check: async () => undefined,
  holder: 'this-server',
  release: async () => undefined,
};

export interface DatabaseLeaseOptions {
  readonly db: Kysely<Database>;
  /** How long a lease lasts without renewal (ms): a dead holder is replaced after at most this. */
  readonly ttlMs?: number;
  /** This replica's name in the leases table; unique per process. */
  readonly holder?: string;
  readonly now?: () => number;
}

export const DEFAULT_LEASE_TTL_MS = 10_000;

export function replicaName(): string {
  return `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
}

export function createDatabaseLease(options: DatabaseLeaseOptions): RolloutLease {
  const { db } = options;
  const ttl = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  const holder = options.holder ?? replicaName();
  const now = options.now ?? Date.now;
  /** The fence of each lease this server took. */
  const fences = new Map<string, number>();

  return {
    holder,
    async holds(name) {
      const t = now();
      const renewed = await db
        .updateTable('leases')
        .set((eb) => ({
          fence: eb
            .case()
            .when('holder', '=', holder)
            .then(eb.ref('fence'))
            .else(eb('fence', '+', 1))
            .end(),
          holder,
          expires_at: t + ttl,
        }))
        .where('name', '=', name)
        .where((eb) => eb.or([eb('holder', '=', holder), eb('expires_at', '<', t)]))
        .returning('fence')
        .executeTakeFirst();
      if (renewed) {
        fences.set(name, Number(renewed.fence));
        return true;
      }
      const created = await db
        .insertInto('leases')
        .values({ name, holder, fence: 1, expires_at: t + ttl })
        .onConflict((conflict) => conflict.column('name').doNothing())
        .returning('fence')
        .executeTakeFirst();
      if (created) {
        fences.set(name, Number(created.fence));
        return true;
      }
      fences.delete(name);
      return false;
    },
    async check(trx, name) {
      const fence = fences.get(name);
      const result =
        fence === undefined
          ? undefined
          : await trx
              .updateTable('leases')
              .set({ holder })
              .where('name', '=', name)
              .where('holder', '=', holder)
              .where('fence', '=', fence)
              .executeTakeFirst();
      if (!result || Number(result.numUpdatedRows) !== 1) {
        fences.delete(name);
        throw new EdgefleetError(
          'EF_LEASE_LOST',
          `this server (${holder}) no longer holds the lease of ${name}: another replica drives it`,
        );
      }
    },
    async release() {
      const names = [...fences.keys()];
      fences.clear();
      if (names.length === 0) return;
      await db.updateTable('leases').set({ expires_at: 0 }).where('holder', '=', holder).where('name', 'in', names).execute();
    },
  };
}

/** Whether an error means "another replica drives this now" (not a failure to report). */
export function isLeaseLost(error: unknown): boolean {
  return error instanceof EdgefleetError && error.code === 'EF_LEASE_LOST';
}
