/** @edgefleet/agent for browsers: the agent's state in IndexedDB (idb-keyval), beside the runtime's models. */
import { createStore, get, set } from 'idb-keyval';
import type { AgentStateStore } from './agent.ts';

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
