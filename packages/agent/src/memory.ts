/**
 * The agent's state and telemetry outbox in memory: for a device with no storage worth the name
 * and for the simulator's thousands of devices in one process. Lost with the process: after a
 * restart the agent applies the retained desired state again (the runtime makes that a no-op for
 * models it already runs) and unsent telemetry is gone.
 */
import type { TelemetryWindow } from '@edgefleet/protocol';
import type { AgentStateStore } from './agent.ts';
import { type QueuedWindow, queueKey, TELEMETRY_QUEUE_DEFAULTS, type TelemetryQueueStore } from './telemetry.ts';

export function createMemoryAgentState(initial = { lastSequence: 0 }): AgentStateStore {
  let state = { ...initial };
  return {
    read: async () => ({ ...state }),
    write: async (next) => {
      state = { ...next };
    },
  };
}

export function createMemoryTelemetryQueue(options: { limit?: number } = {}): TelemetryQueueStore {
  const limit = options.limit ?? TELEMETRY_QUEUE_DEFAULTS.limit;
  const windows = new Map<string, TelemetryWindow>();
  let dropped = 0;
  let last = 0;
  return {
    async append(window) {
      last = Math.max(Date.now(), last + 1);
      windows.set(queueKey(window, last), window);
      // Keys sort by append time and a Map keeps insertion order: the first keys are the oldest.
      for (const key of windows.keys()) {
        if (windows.size <= limit) break;
        windows.delete(key);
        dropped++;
      }
    },
    list: async (): Promise<QueuedWindow[]> => [...windows].map(([key, window]) => ({ key, window })),
    async remove(keys) {
      for (const key of keys) windows.delete(key);
    },
    async takeDropped() {
      const count = dropped;
      dropped = 0;
      return count;
    },
  };
}
