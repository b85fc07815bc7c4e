/**
 * The contract suites of @edgefleet/test-utils against the browser implementations, in real
 * headless Chromium: the runtime's IndexedDB model store and its onnxruntime-web engine (WASM, and
 * WebGPU on the SwiftShader software adapter), the agent's IndexedDB state and telemetry outbox.
 * The suites run in Node; each object lives in the page and is reached through test/helpers/remote.ts.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { telemetryMessage } from '@edgefleet/agent';
import type { TelemetryWindow } from '@edgefleet/protocol';
import { WindowProfile } from '@edgefleet/runtime/core';
import {
  type AgentStateUnderTest,
  describeAgentStateContract,
  describeEngineContract,
  describeModelStoreContract,
  describeTelemetryQueueContract,
  type EngineUnderTest,
  type ModelStoreUnderTest,
  type TelemetryQueueUnderTest,
} from '@edgefleet/test-utils/contracts';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { serveBrowserApp } from '../helpers/browser-app.ts';
import { launchPersistentChromium } from '../helpers/chromium.ts';
import { pageCall, remote } from '../helpers/remote.ts';
import type { StaticServer } from '../helpers/static-server.ts';

interface PageFactories {
  modelStore(name: string): Promise<ModelStoreUnderTest>;
  engine(webgpu: boolean): Promise<EngineUnderTest>;
  agentState(database: string): Promise<AgentStateUnderTest>;
  telemetryQueue(database: string, limit: number): Promise<TelemetryQueueUnderTest<TelemetryWindow>>;
  corruptAgentState(database: string): Promise<void>;
  corruptTelemetryEntry(database: string, key: string): Promise<void>;
}

const entry = fileURLToPath(new URL('./contracts-page.ts', import.meta.url));
let app: StaticServer;
let context: BrowserContext;
let page: PageFactories;
let databases = 0;
const database = (what: string) => `contract-${what}-${databases++}`;

beforeAll(async () => {
  app = await serveBrowserApp(entry, '/contracts.js');
  context = await launchPersistentChromium(await mkdtemp(join(tmpdir(), 'edgefleet-chromium-contracts-')), ['--enable-unsafe-webgpu']);
  const tab = await context.newPage();
  await tab.goto(`${app.url}/`);
  await tab.evaluate(`import('${app.url}/contracts.js').then((module) => { window.contracts = module; })`);
  page = remote<PageFactories>(pageCall(tab), 0);
}, 120_000);

afterAll(async () => {
  await context?.close();
  await app?.close();
});

describeModelStoreContract('IndexedDB in Chromium', {
  open: () => page.modelStore('contract-models'),
});

describeEngineContract('onnxruntime-web WASM in Chromium', async () => ({ engine: await page.engine(false), executionProvider: 'wasm' }));
// SwiftShader's WebGPU computes in other kernels than onnxruntime's CPU ones (TOOLCHAIN.md): 1e-4.
describeEngineContract(
  'onnxruntime-web WebGPU (SwiftShader) in Chromium',
  async () => ({
    engine: await page.engine(true),
    executionProvider: 'webgpu',
    tolerance: 1e-4,
  }),
  { timeoutMs: 120_000 },
);

describeAgentStateContract('IndexedDB in Chromium', {
  durable: true,
  corruptible: true,
  async storage() {
    const name = database('state');
    return { open: () => page.agentState(name), corrupt: () => page.corruptAgentState(name) };
  },
});

const closed = new WindowProfile({ name: 'm', version: '1.0.0' }, 0).close(60_000);
describeTelemetryQueueContract<TelemetryWindow>('IndexedDB in Chromium', {
  durable: true,
  corruptible: true,
  window: (bootId, seq) => telemetryMessage({ ...closed, executionProvider: 'wasm' }, { deviceId: 'dev-1', bootId, seq, dropped: 0 }),
  async storage() {
    const name = database('outbox');
    return { open: ({ limit }) => page.telemetryQueue(name, limit), corrupt: (key) => page.corruptTelemetryEntry(name, key) };
  },
});
