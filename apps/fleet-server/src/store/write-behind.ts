/**
 * Write-behind for the high-rate, low-stakes updates devices cause (presence, last seen, reported
 * state, a rollout member's status): updates are queued by key, a later update of the same key
 * merges into the queued one, and the queue is written in one transaction every `intervalMs` (50 ms unless told; or
 * as soon as `maxBatch` keys wait). With synchronous=FULL every SQLite commit is an fsync, so
 * 10,000 devices each reporting three times are a handful of commits instead of 30,000.
 *
 * What this trades: an update can be lost if the process dies within `intervalMs` of it (or, as
 * batches are committed without an fsync, if the machine loses power shortly after). Every
 * update queued here is one a device repeats (its retained reported state on reconnect, its
 * presence), so what a crash loses comes back when the device does. Decisions that must not be
 * lost (desired state, rollout state, audit) are written directly, never through here.
 */
import { type Kysely, sql, type Transaction } from 'kysely';
import type { DialectKind } from './migrations.ts';
import type { Database } from './schema.ts';

type Values = Record<string, unknown>;

export interface WriteBehind {
  /**
   * Queues `write(trx, values)`. A queued update with the same key merges: `values` are combined
   * (later fields win) and the later `write` runs with them.
   */
  update<V extends Values>(key: string, values: V, write: (trx: Transaction<Database>, values: V) => Promise<unknown>): void;
  /** Writes what is queued now; resolves when it is committed. */
  flush(): Promise<void>;
  /** Calls `listener` after each committed batch with the keys it wrote. */
  onFlushed(listener: (keys: readonly string[]) => void): () => void;
  /** Updates queued and not yet committed. */
  readonly pending: number;
  /** Flushes and stops the timer. */
  close(): Promise<void>;
}

/**
 * Runs `work` in a transaction whose commit does not wait for the disk: SQLite (WAL) with
 * synchronous=NORMAL for this one commit, PostgreSQL with synchronous_commit off. A crash of the
 * process loses nothing committed; a power cut can lose the last such commits (never corrupt the
 * database), and the next ordinary commit makes them durable too. The connection is held
 * throughout, so no other transaction runs with the relaxed setting.
 */
async function commitWithoutFsync(
  db: Kysely<Database>,
  dialect: DialectKind,
  work: (trx: Transaction<Database>) => Promise<void>,
): Promise<void> {
  if (dialect === 'postgres') {
    await db.transaction().execute(async (trx) => {
      await sql`set local synchronous_commit = off`.execute(trx);
      await work(trx);
    });
    return;
  }
  await db.connection().execute(async (connection) => {
    await sql`pragma synchronous = normal`.execute(connection);
    try {
      await connection.transaction().execute(work);
    } finally {
      await sql`pragma synchronous = full`.execute(connection);
    }
  });
}

export function createWriteBehind(
  db: Kysely<Database>,
  options: {
    intervalMs?: number;
    maxBatch?: number;
    /** Which database: how a batch is committed without waiting for the disk differs. */
    dialect?: DialectKind;
    log: { warn(obj: object, msg: string): void };
  },
): WriteBehind {
  const intervalMs = options.intervalMs ?? 50;
  const maxBatch = options.maxBatch ?? 2000;
  let queue = new Map<string, { key: string; values: Values; write: (trx: Transaction<Database>, values: Values) => Promise<unknown> }>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let writing: Promise<void> = Promise.resolve();
  let closed = false;
  const listeners = new Set<(keys: readonly string[]) => void>();

  function schedule(): void {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, intervalMs);
  }

  function flush(): Promise<void> {
    if (timer) clearTimeout(timer);
    timer = undefined;
    // One batch at a time, in order: a later batch never commits before an earlier one.
    writing = writing.then(async () => {
      if (queue.size === 0) return;
      const batch = queue;
      queue = new Map();
      // In key order: two replicas writing batches that touch the same devices take their row
      // locks in the same order, so they queue behind each other instead of deadlocking.
      const ordered = [...batch.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      for (let attempt = 1; ; attempt++) {
        try {
          await commitWithoutFsync(db, options.dialect ?? 'sqlite', async (trx) => {
            for (const { values, write } of ordered) await write(trx, values);
          });
          break;
        } catch (error) {
          // A deadlock PostgreSQL broke, or a serialization failure: the batch may simply run again.
          const code = (error as { code?: string }).code;
          if ((code === '40P01' || code === '40001') && attempt < 5) {
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
            continue;
          }
          // Nothing here is worth stopping for, but the operator must see that updates were lost.
          options.log.warn({ err: error, updates: batch.size }, 'could not write a batch of device updates');
          return;
        }
      }
      const keys = [...batch.keys()];
      for (const listener of listeners) {
        try {
          listener(keys);
        } catch (error) {
          options.log.warn({ err: error }, 'a write-behind listener failed');
        }
      }
    });
    return writing;
  }

  return {
    update(key, values, write) {
      if (closed) return;
      const queued = queue.get(key);
      const typedWrite = write as (trx: Transaction<Database>, values: Values) => Promise<unknown>;
      // Merged in place (the queue owns its copy): a key gathering thousands of fields stays linear.
      if (queued) {
        Object.assign(queued.values, values);
        queued.write = typedWrite;
      } else {
        queue.set(key, { key, values: { ...values }, write: typedWrite });
      }
      if (queue.size >= maxBatch) void flush();
      else schedule();
    },
    flush,
    onFlushed(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    get pending() {
      return queue.size;
    },
    async close() {
      await flush();
      closed = true;
    },
  };
}
