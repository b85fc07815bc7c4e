/** @edgefleet/agent for Node devices: the agent's state in a file beside the runtime's store. */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TelemetryWindow } from '@edgefleet/protocol';
import { clearTemporaryFiles, writeFileAtomically } from '@edgefleet/protocol/node';
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

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `<dir>/agent-state.json`, replaced atomically (temp + fsync + rename). */
export function createFileAgentState(dir: string): AgentStateStore {
  const path = join(dir, 'agent-state.json');
  return {
    async read() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOENT') return { lastSequence: 0 };
        throw error; // the disk itself failed: not something to paper over
      }
      // Unreadable (a disk fault, a hand edit): start from 0, and the retained desired state is
      // applied again, a no-op for the models that already run it.
      return { lastSequence: sequenceOf(parseOrUndefined(text)) };
    },
    write: (state) => writeFileAtomically(path, JSON.stringify(state)),
  };
}

/**
 * The telemetry outbox as files: `<dir>/telemetry/<key>.json`, one per window, written durably;
 * `dropped.json` counts overflow. A torn or unreadable file (a crash mid-write cannot make one,
 * a disk fault can) is removed and counted as dropped rather than blocking the queue.
 */
export function createFileTelemetryQueue(dir: string, options: { limit?: number } = {}): TelemetryQueueStore {
  const folder = join(dir, 'telemetry');
  const droppedPath = join(folder, 'dropped.json');
  const limit = options.limit ?? TELEMETRY_QUEUE_DEFAULTS.limit;
  let last = 0;
  // One operation at a time: appends, trims and removals never interleave; the first clears what a
  // killed process left half-written.
  const serialize = createSerializer();
  let cleared: Promise<void> | undefined;
  const serial = <T>(task: () => Promise<T>) =>
    serialize(async () => {
      cleared ??= clearTemporaryFiles(folder);
      await cleared;
      return task();
    });
  const keys = async () => {
    try {
      return (await readdir(folder))
        .filter((f) => f.endsWith('.json') && f !== 'dropped.json')
        .map((f) => f.slice(0, -5))
        .sort();
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return [];
      throw error;
    }
  };
  const readDropped = async () => {
    try {
      return Number(JSON.parse(await readFile(droppedPath, 'utf8'))) || 0;
    } catch {
      return 0;
    }
  };
  const addDropped = async (count: number) => {
    if (count > 0) await writeFileAtomically(droppedPath, JSON.stringify((await readDropped()) + count));
  };
  return {
    append: (window: TelemetryWindow) =>
      serial(async () => {
        last = Math.max(Date.now(), last + 1);
        await writeFileAtomically(join(folder, `${queueKey(window, last)}.json`), JSON.stringify(window));
        const all = await keys();
        const over = all.slice(0, Math.max(0, all.length - limit));
        for (const key of over) await rm(join(folder, `${key}.json`), { force: true });
        await addDropped(over.length);
      }),
    list: () =>
      serial(async () => {
        const queued: QueuedWindow[] = [];
        let unreadable = 0;
        for (const key of await keys()) {
          const window = parseOrUndefined(await readFile(join(folder, `${key}.json`), 'utf8').catch(() => ''));
          if (isQueuedWindow(window)) {
            queued.push({ key, window });
          } else {
            await rm(join(folder, `${key}.json`), { force: true });
            unreadable++;
          }
        }
        await addDropped(unreadable);
        return queued;
      }),
    remove: (removed) =>
      serial(async () => {
        for (const key of removed) await rm(join(folder, `${key}.json`), { force: true });
      }),
    takeDropped: () =>
      serial(async () => {
        const dropped = await readDropped();
        if (dropped > 0) await writeFileAtomically(droppedPath, '0');
        return dropped;
      }),
  };
}
