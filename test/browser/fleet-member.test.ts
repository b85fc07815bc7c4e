/**
 * Browsers are fleet members too: a page enrolls, connects over MQTT-over-WebSocket, receives a
 * rollout, and keeps serving offline after a reload with the server stopped. Headless Chromium.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFleetServer, type FleetServer } from '@edgefleet/fleet-server';
import { encodeTensor } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveBrowserApp } from '../helpers/browser-app.ts';
import { launchPersistentChromium } from '../helpers/chromium.ts';
import { until } from '../helpers/fleet.ts';
import type { StaticServer } from '../helpers/static-server.ts';

const entry = fileURLToPath(new URL('./fleet-member-page.ts', import.meta.url));
const model = mlpModel(7);
const input = seededValues(8, 3);
const TOKEN = 'browser-admin-token-0123456789abcdefghij';

let app: StaticServer;
let server: FleetServer;
let context: BrowserContext;
let page: Page;
let enrollmentToken: string;

async function openMember(): Promise<Page> {
  const next = await context.newPage();
  next.on('console', (m) => process.env.EDGEFLEET_DEBUG && console.log('page:', m.text()));
  next.on('pageerror', (e) => process.env.EDGEFLEET_DEBUG && console.log('pageerror:', e.message));
  await next.goto(`${app.url}/`);
  await next.evaluate(
    `import('${app.url}/member.js').then(async (m) => { window.member = await m.startMember(${JSON.stringify({ serverUrl: server.url, token: enrollmentToken, id: 'browser-1' })}); })`,
  );
  return next;
}

function activeVersion(target: Page): Promise<string | undefined> {
  return target.evaluate('window.member.runtime.models().find((m) => m.name === "mlp")?.active?.version') as Promise<string | undefined>;
}

function run(target: Page): Promise<number[]> {
  return target.evaluate(
    `window.member.runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data: Float32Array.from(${JSON.stringify(Array.from(input))}) } }).then((o) => Array.from(o.scores.data))`,
  ) as Promise<number[]>;
}

beforeAll(async () => {
  app = await serveBrowserApp(entry, '/member.js');
  server = await createFleetServer({
    env: {},
    config: {
      dataDir: await mkdtemp(join(tmpdir(), 'edgefleet-browser-fleet-')),
      port: 0,
      mqttPort: 0,
      adminToken: TOKEN,
      corsOrigins: [app.url],
    },
  });
  const form = new FormData();
  form.append('version', '1.0.0');
  form.append('sampleInputs', JSON.stringify([[encodeTensor('features', 'float32', [2, 4], input)]]));
  form.append('model', new Blob([model.bytes.slice()]), 'model.onnx');
  const auth = { authorization: `Bearer ${TOKEN}` };
  expect((await server.app.inject({ method: 'POST', url: '/v1/models/mlp/versions', headers: auth, payload: form })).statusCode).toBe(201);
  enrollmentToken = (
    await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', headers: auth, payload: { tags: ['browser'], uses: 1 } })
  ).json().token;
  context = await launchPersistentChromium(await mkdtemp(join(tmpdir(), 'edgefleet-chromium-member-')));
  page = await openMember();
}, 120_000);

afterAll(async () => {
  await context?.close();
  await server?.close();
  await app?.close();
});

describe('a web page as a fleet member', () => {
  it('enrolls over HTTP, connects over MQTT-over-WebSocket and receives a rollout', async () => {
    await until(() => page.evaluate('window.member?.connected()') as Promise<boolean>, 'the page to connect over WebSocket');
    const auth = { authorization: `Bearer ${TOKEN}` };
    const rollout = await server.app.inject({
      method: 'POST',
      url: '/v1/rollouts',
      headers: auth,
      payload: { model: 'mlp', version: '1.0.0', selector: { tags: ['browser'] }, stages: [{ percent: 100 }] },
    });
    expect(rollout.statusCode).toBe(201);
    await until(async () => (await activeVersion(page)) === '1.0.0', 'the page to activate mlp 1.0.0', 60_000);
    await until(
      async () =>
        (await server.app.inject({ method: 'GET', url: `/v1/rollouts/${rollout.json().id}`, headers: auth })).json().state === 'completed',
      'the rollout to complete',
    );
    const view = (await server.app.inject({ method: 'GET', url: '/v1/devices/browser-1', headers: auth })).json();
    expect(view.reported).toMatchObject({
      agent: { platform: 'browser' },
      models: [{ name: 'mlp', active: { version: '1.0.0', executionProvider: 'wasm' } }],
    });
    const expected = model.reference(input);
    for (const [i, value] of (await run(page)).entries()) expect(Math.abs(value - (expected[i] ?? 0))).toBeLessThan(1e-5);
    // Its telemetry goes out over the same WebSocket and is stored by the server.
    await run(page);
    await page.evaluate('window.member.flushTelemetry()');
    await until(
      async () =>
        (await server.app.inject({ method: 'GET', url: '/v1/telemetry/windows?device=browser-1', headers: auth })).json().windows.length ===
        1,
      'the telemetry window of the page stored',
    );
    await until(async () => ((await page.evaluate('window.member.outbox()')) as string[]).length === 0, 'the outbox emptied by the ack');
  }, 90_000);

  it('keeps serving offline after a reload with the fleet server stopped', async () => {
    const before = await run(page);
    await server.close();
    await page.close();
    page = await openMember();
    await until(async () => (await activeVersion(page)) === '1.0.0', 'the model restored from IndexedDB');
    expect(await run(page)).toEqual(before);
    expect(await page.evaluate('window.member.connected()')).toBe(false);
    // Offline, the window waits in IndexedDB, and is still there after another reload.
    await page.evaluate('window.member.flushTelemetry()');
    const waiting = (await page.evaluate('window.member.outbox()')) as string[];
    expect(waiting).toHaveLength(1);
    await page.close();
    page = await openMember();
    await until(async () => (await activeVersion(page)) === '1.0.0', 'the model restored again');
    expect(await page.evaluate('window.member.outbox()')).toEqual(waiting);
  }, 90_000);
});
