/** @edgefleet/agent for browsers: the agent's state in IndexedDB (idb-keyval), beside the runtime's models. */
import type { TelemetryWindow } from '@edgefleet/protocol';
import { createStore, delMany, get, getMany, keys, set } from 'idb-keyval';
import type { AgentStateStore } from './agent.ts';
import {
  createSerializer,
  isQueuedWindow,
  type QueuedWindow,
  queueKey,
  sequenceOf,
  TELEMETRY_QUEUE_DEFAULTS,
  type TelemetryQueueStore,
} from './telemetry.ts';

export * from './index.ts';

export function createIndexedDbAgentState(database = 'edgefleet-agent'): AgentStateStore {
  const store = createStore(database, 'state');
  return {
    async read() {
      // Unreadable: start from 0 (the retained desired state is applied again, a no-op for what runs).
      return { lastSequence: sequenceOf(await get<unknown>('lastSequence', store)) };
    },
    write: (state) => set('lastSequence', state.lastSequence, store),
  };
}

/**
 * The telemetry outbox in IndexedDB: one entry per window under its sortable key, and the overflow
 * count under `dropped`. Each put is its own transaction (IndexedDB commits it durably).
 */
export function createIndexedDbTelemetryQueue(database = 'edgefleet-telemetry', options: { limit?: number } = {}): TelemetryQueueStore {
  const store = createStore(database, 'windows');
  const limit = options.limit ?? TELEMETRY_QUEUE_DEFAULTS.limit;
  let last = 0;
  // One operation at a time: appends, trims and removals never interleave.
  const serial = createSerializer();
  const windowKeys = async () => ((await keys(store)) as string[]).filter((k) => k !== 'dropped').sort();
  const addDropped = async (count: number) => {
    if (count > 0) await set('dropped', ((await get<number>('dropped', store)) ?? 0) + count, store);
  };
  return {
    append: (window: TelemetryWindow) =>
      serial(async () => {
        last = Math.max(Date.now(), last + 1);
        await set(queueKey(window, last), window, store);
        const all = await windowKeys();
        const over = all.slice(0, Math.max(0, all.length - limit));
        if (over.length > 0) await delMany(over, store);
        await addDropped(over.length);
      }),
    list: () =>
      serial(async () => {
        const all = await windowKeys();
        const values = await getMany<unknown>(all, store);
        const queued: QueuedWindow[] = [];
        const unreadable: string[] = [];
        for (const [i, key] of all.entries()) {
          const window = values[i];
          if (isQueuedWindow(window)) queued.push({ key, window });
          else unreadable.push(key);
        }
        // Removed and counted as dropped, as the files outbox does: it must never block the queue.
        if (unreadable.length > 0) await delMany(unreadable, store);
        await addDropped(unreadable.length);
        return queued;
      }),
    remove: (removed) => serial(() => delMany([...removed], store)),
    takeDropped: () =>
      serial(async () => {
        const dropped = (await get<number>('dropped', store)) ?? 0;
        if (dropped > 0) await set('dropped', 0, store);
        return dropped;
      }),
  };
}
