/** @edgefleet/agent for browsers: the agent's state in IndexedDB (idb-keyval), beside the runtime's models. */
import type { TelemetryWindow } from '@edgefleet/protocol';
import { createStore, delMany, get, getMany, keys, set } from 'idb-keyval';
import type { AgentStateStore } from './agent.ts';
import { createSerializer, type QueuedWindow, queueKey, TELEMETRY_QUEUE_DEFAULTS, type TelemetryQueueStore } from './telemetry.ts';

export * from './index.ts';

export function createIndexedDbAgentState(database = 'edgefleet-agent'): AgentStateStore {
  const store = createStore(database, 'state');
  return {
    async read() {
      const lastSequence = await get<number>('lastSequence', store);
      return { lastSequence: typeof lastSequence === 'number' ? lastSequence : 0 };
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
        const values = await getMany<TelemetryWindow>(all, store);
        return all
          .map((key, i) => ({ key, window: values[i] as TelemetryWindow }))
          .filter((q): q is QueuedWindow => q.window !== undefined);
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
