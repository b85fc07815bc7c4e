/**
 * The agent's state and telemetry outbox, every implementation against the same contracts: files
 * (Node), IndexedDB (fake-indexeddb here; real IndexedDB in test/browser/contracts.test.ts) and
 * memory.
 */
import 'fake-indexeddb/auto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TelemetryWindow } from '@edgefleet/protocol';
import { WindowProfile } from '@edgefleet/runtime/core';
import { describeAgentStateContract, describeTelemetryQueueContract } from '@edgefleet/test-utils/contracts';
import { createStore, set } from 'idb-keyval';
import { createIndexedDbAgentState, createIndexedDbTelemetryQueue } from './browser.ts';
import { createMemoryAgentState, createMemoryTelemetryQueue } from './memory.ts';
import { createFileAgentState, createFileTelemetryQueue } from './node.ts';
import { telemetryMessage } from './telemetry.ts';

const closed = new WindowProfile({ name: 'm', version: '1.0.0' }, 0).close(60_000);
const window = (bootId: string, seq: number): TelemetryWindow =>
  telemetryMessage({ ...closed, executionProvider: 'wasm' }, { deviceId: 'dev-1', bootId, seq, dropped: 0 });
let databases = 0;
const database = (what: string) => `edgefleet-contract-${what}-${databases++}`;

describeAgentStateContract('files', {
  durable: true,
  corruptible: true,
  async storage() {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-agent-state-'));
    return {
      open: async () => createFileAgentState(dir),
      corrupt: () => writeFile(join(dir, 'agent-state.json'), '{"lastSeq'),
    };
  },
});

describeAgentStateContract('IndexedDB (fake-indexeddb)', {
  durable: true,
  corruptible: true,
  async storage() {
    const name = database('state');
    return {
      open: async () => createIndexedDbAgentState(name),
      corrupt: () => set('lastSequence', { not: 'a number' }, createStore(name, 'state')),
    };
  },
});

describeAgentStateContract('memory', {
  durable: false,
  corruptible: false,
  async storage() {
    return { open: async () => createMemoryAgentState() };
  },
});

describeTelemetryQueueContract<TelemetryWindow>('files', {
  durable: true,
  corruptible: true,
  window,
  async storage() {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-outbox-'));
    return {
      open: async ({ limit }) => createFileTelemetryQueue(dir, { limit }),
      async corrupt(key) {
        await mkdir(join(dir, 'telemetry'), { recursive: true });
        await writeFile(join(dir, 'telemetry', `${key}.json`), '{"type":');
      },
    };
  },
});

describeTelemetryQueueContract<TelemetryWindow>('IndexedDB (fake-indexeddb)', {
  durable: true,
  corruptible: true,
  window,
  async storage() {
    const name = database('outbox');
    return {
      open: async ({ limit }) => createIndexedDbTelemetryQueue(name, { limit }),
      corrupt: (key) => set(key, 'not a window', createStore(name, 'windows')),
    };
  },
});

describeTelemetryQueueContract<TelemetryWindow>('memory', {
  durable: false,
  corruptible: false,
  window,
  async storage() {
    return { open: async ({ limit }) => createMemoryTelemetryQueue({ limit }) };
  },
});
