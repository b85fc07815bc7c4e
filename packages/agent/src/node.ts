/** @edgefleet/agent for Node devices: the agent's state in a file beside the runtime's store. */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { AgentStateStore } from './agent.ts';

export * from './index.ts';

/** `<dir>/agent-state.json`, replaced atomically (temp + fsync + rename). */
export function createFileAgentState(dir: string): AgentStateStore {
  const path = join(dir, 'agent-state.json');
  return {
    async read() {
      try {
        const state = JSON.parse(await readFile(path, 'utf8')) as { lastSequence?: unknown };
        return { lastSequence: typeof state.lastSequence === 'number' ? state.lastSequence : 0 };
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOENT') return { lastSequence: 0 };
        throw error;
      }
    },
    async write(state) {
      await mkdir(dirname(path), { recursive: true });
      const temp = `${path}.tmp`;
      const handle = await open(temp, 'w', 0o600);
      try {
        await handle.writeFile(JSON.stringify(state));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
    },
  };
}
