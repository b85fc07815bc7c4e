/**
 * What users install, tested where they install it: every public package is packed (pnpm pack,
 * as published), installed with npm into a scratch project outside the repository (third-party
 * dependencies from the registry), and used the way the docs say:
 *   - the fleet server started with `npx @edgefleet/fleet-server` on embedded defaults, its dashboard served;
 *   - `edgefleet-agent run` from its tarball, enrolling and following its desired state;
 *   - the runtime's Node quick start from docs/runtime.md, as plain JavaScript, run twice (the
 *     second time with the server gone: it serves from its store);
 *   - a TypeScript project type-checked with moduleResolution bundler and node16;
 *   - a Vite production build embedding runtime + agent, served statically and opened in
 *     Chromium: it enrolls, receives a rollout, runs on WASM, reloads offline and serves from
 *     IndexedDB, loading nothing from anywhere but its own origin and the fleet server;
 *   - the esbuild recipe: onnxruntime-web's .wasm copied to a folder of the app, `wasmPaths`;
 *   - fleetctl from its tarball (login, models push, a rollout watched to its end, fleet status)
 *     and @edgefleet/client in a plain JavaScript script and under TypeScript.
 * Nothing here resolves the workspace's sources: the scratch project has no access to them.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { encodeTensor } from '@edgefleet/protocol';
import { createArtifactServer, mlpModel, readModel, SILERO_VAD_V5_PATH, seededValues, sileroSampleInput } from '@edgefleet/test-utils';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApi, freePort } from '../helpers/child-server.ts';
import { launchPersistentChromium } from '../helpers/chromium.ts';
import { until } from '../helpers/fleet.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const TOKEN = 'consumer-admin-token-0123456789abcdefghij';
/** The versions the workspace builds and tests with, installed from the registry here. */
const TOOLS = { vite: '8.3.8', typescript: '7.0.2', '@types/node': '20.19.43', esbuild: '0.28.2' };

let project: string;
const children: ChildProcess[] = [];
const contexts: BrowserContext[] = [];

/** Runs a command in the scratch project, as a user would type it. */
function sh(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeout?: number } = {}) {
  return run(command, args, {
    cwd: options.cwd ?? project,
    env: { ...process.env, ...options.env },
    timeout: options.timeout ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** Starts a long-running command and collects its output; resolves once `ready` appears in it. */
async function start(command: string, args: string[], ready: string, env: NodeJS.ProcessEnv = {}) {
  // Its own process group: npx runs the bin in a child of its own, and a stop must reach both.
  const child = spawn(command, args, {
    cwd: project,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(child);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await Promise.race([
    until(async () => output.includes(ready), `"${ready}" from ${command} ${args.join(' ')}`, 60_000),
    exited.then((code) => {
      throw new Error(`${command} ${args.join(' ')} exited with ${code}: ${output}`);
    }),
  ]);
  return { child, output: () => output, exited };
}

/** Signals a process started by start() and everything it started. */
function stopGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** A fleet server from the tarball (node_modules/.bin, as npm installed it), on free ports. */
async function startServer(dataDir: string, corsOrigins = '') {
  const port = await freePort();
  const mqttPort = await freePort();
  const server = await start(join(project, 'node_modules', '.bin', 'edgefleet-server'), [], 'admin API', {
    EDGEFLEET_DATA_DIR: dataDir,
    EDGEFLEET_PORT: String(port),
    EDGEFLEET_MQTT_PORT: String(mqttPort),
    EDGEFLEET_ADMIN_TOKEN: TOKEN,
    EDGEFLEET_CORS_ORIGINS: corsOrigins,
  });
  const url = `http://127.0.0.1:${port}`;
  return { ...server, url, api: adminApi(url, TOKEN) };
}

function sileroForm(): FormData {
  const form = new FormData();
  form.append('version', '5.0.0');
  form.append('sampleInputs', JSON.stringify([sileroSampleInput(1)]));
  form.append('model', new Blob([readModel(SILERO_VAD_V5_PATH).slice()]), 'silero_vad_v5.onnx');
  return form;
}

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'edgefleet-consumer-'));
  const packs = join(project, 'packs');
  const packed = await sh(process.execPath, [join(root, 'scripts', 'pack.mjs'), packs], { cwd: root, timeout: 300_000 });
  const tarballs = packed.stdout.trim().split('\n');
  const dependencies: Record<string, string> = { ...TOOLS };
  for (const tarball of tarballs) {
    const name = (await sh('tar', ['-xzOf', tarball, 'package/package.json'])).stdout;
    dependencies[JSON.parse(name).name] = `file:${tarball}`;
  }
  expect(Object.keys(dependencies)).toEqual(
    expect.arrayContaining([
      '@edgefleet/protocol',
      '@edgefleet/drift',
      '@edgefleet/runtime',
      '@edgefleet/agent',
      '@edgefleet/fleet-server',
      '@edgefleet/device-agent',
      '@edgefleet/client',
      '@edgefleet/fleetctl',
    ]),
  );
  await writeFile(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies }, null, 2),
  );
  // better-sqlite3 compiles where its prebuilt binary cannot be downloaded: against this Node's headers.
  await sh('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
    env: { npm_config_nodedir: dirname(dirname(process.execPath)) },
    timeout: 600_000,
  });
}, 660_000);

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  for (const child of children) stopGroup(child, 'SIGKILL');
  if (project && !process.env.EDGEFLEET_KEEP_CONSUMER) await rm(project, { recursive: true, force: true });
});

describe('the packages as installed by npm', () => {
  it('ship built JavaScript, types and licences, and no tests, fixtures or TypeScript loader', async () => {
    for (const name of ['protocol', 'drift', 'runtime', 'agent', 'client', 'fleet-server', 'device-agent', 'fleetctl']) {
      const dir = join(project, 'node_modules', '@edgefleet', name);
      const files = (await readdir(dir, { recursive: true })).map(String);
      expect(files, name).toContain('LICENSE');
      expect(files.some((f) => f.startsWith('dist') && f.endsWith('.d.ts'))).toBe(true);
      expect(files.filter((f) => /\.test\.|fixtures|\.tsbuildinfo$/.test(f))).toEqual([]);
      const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'));
      expect(pkg.license).toBe('Apache-2.0');
      expect(JSON.stringify(pkg.dependencies ?? {})).not.toMatch(/workspace:|catalog:|tsx/);
    }
    // The systemd units ship with what they run, and pass systemd's check against the installed bins.
    for (const [name, unit, bin] of [
      ['fleet-server', 'edgefleet-server.service', 'edgefleet-server'],
      ['device-agent', 'edgefleet-agent.service', 'edgefleet-agent'],
    ] as const) {
      const text = await readFile(join(project, 'node_modules', '@edgefleet', name, 'systemd', unit), 'utf8');
      const file = join(project, unit);
      await writeFile(file, text.replace(`/usr/local/bin/${bin}`, join(project, 'node_modules', '.bin', bin)));
      const verified = await sh('systemd-analyze', ['verify', file]);
      expect(verified.stderr).toBe('');
    }
    // onnxruntime-node stays an optional peer: not installed unless the app asks for it.
    await expect(stat(join(project, 'node_modules', 'onnxruntime-node'))).rejects.toThrow();
  });
});

describe('the fleet server and device agent from their tarballs', () => {
  it('npx @edgefleet/fleet-server: --version, --help, and a start on embedded defaults in the folder it was started from', async () => {
    const { version } = JSON.parse(await readFile(join(root, 'apps', 'fleet-server', 'package.json'), 'utf8'));
    expect((await sh('npx', ['--no-install', '@edgefleet/fleet-server', '--version'])).stdout.trim()).toBe(version);
    const help = (await sh('npx', ['--no-install', '@edgefleet/fleet-server', '--help'])).stdout;
    expect(help).toContain('EDGEFLEET_DATA_DIR');
    expect(help).toContain('./.edgefleet/server');
    const port = await freePort();
    const mqttPort = await freePort();
    const server = await start('npx', ['--no-install', '@edgefleet/fleet-server'], 'admin API', {
      EDGEFLEET_PORT: String(port),
      EDGEFLEET_MQTT_PORT: String(mqttPort),
    });
    expect(server.output()).toContain(`data folder    ${join(project, '.edgefleet', 'server')}`);
    expect((await stat(join(project, '.edgefleet', 'server', 'edgefleet.db'))).isFile()).toBe(true);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    // The dashboard ships in the package: its page, and every script and stylesheet it loads.
    const page = await fetch(`http://127.0.0.1:${port}/rollouts`);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await page.text();
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1] as string);
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    for (const asset of assets) expect((await fetch(`http://127.0.0.1:${port}${asset}`)).status, asset).toBe(200);
    stopGroup(server.child, 'SIGTERM');
    await server.exited;
    await until(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined)) === undefined, 'the server to stop');
  }, 120_000);

  it('edgefleet-agent run follows its desired state, and the runtime quick start of docs/runtime.md runs as plain JavaScript, offline the second time', async () => {
    const server = await startServer(join(project, 'server-a'));
    const registered = await server.api('POST', '/v1/models/silero-vad/versions', sileroForm());

    // The device operator's journey: config file + token file, `edgefleet-agent run`.
    const device = join(project, 'device');
    await mkdir(device, { recursive: true });
    const { token } = await server.api('POST', '/v1/enrollment-tokens', { tags: ['consumer'], uses: 1 });
    await writeFile(join(device, 'enrollment-token'), token, { mode: 0o600 });
    await writeFile(
      join(device, 'agent.json'),
      JSON.stringify({ server: server.url, dataDir: join(device, 'state'), id: 'consumer-1', tokenFile: join(device, 'enrollment-token') }),
    );
    const agent = await start(
      join(project, 'node_modules', '.bin', 'edgefleet-agent'),
      ['run', '--config', join(device, 'agent.json')],
      '"msg":"connected"',
    );
    await server.api('PUT', '/v1/devices/consumer-1/desired/silero-vad', { version: '5.0.0' });
    await until(async () => agent.output().includes('"msg":"model activated"'), 'the agent to activate silero-vad@5.0.0', 60_000);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    // The app developer's journey in Node: the quick start's files, fetched from the server.
    const app = join(project, 'quickstart');
    await mkdir(app, { recursive: true });
    const manifest = registered.manifest;
    await writeFile(join(app, 'manifest.json'), JSON.stringify(manifest));
    await writeFile(join(app, 'keyset.json'), JSON.stringify((await (await fetch(`${server.url}/v1/keyset`)).json()).payload));
    const artifact = async (sha256: string) =>
      new Uint8Array(
        await (await fetch(`${server.url}/v1/artifacts/${sha256}`, { headers: { authorization: `Bearer ${TOKEN}` } })).arrayBuffer(),
      );
    await writeFile(join(app, 'model.onnx'), await artifact(manifest.payload.artifact.sha256));
    const vectors = manifest.payload.files.find((f: { name: string }) => f.name === 'golden-vectors.json');
    await writeFile(join(app, 'golden-vectors.json'), await artifact(vectors.sha256));
    const docs = await readFile(join(root, 'docs', 'runtime.md'), 'utf8');
    const quickstart = docs.match(/```js\n(\/\/ quickstart\.mjs[\s\S]*?)```/)?.[1];
    expect(quickstart).toBeDefined();
    await writeFile(join(app, 'quickstart.mjs'), quickstart ?? '');
    const first = await sh(process.execPath, ['quickstart.mjs'], { cwd: app });
    expect(first.stdout).toMatch(/^silero-vad@5\.0\.0 on (cpu|wasm): speech probability 0\.\d+/m);
    // Restarted with the fleet server gone: served from ./models, same answer.
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const second = await sh(process.execPath, ['quickstart.mjs'], { cwd: app });
    expect(second.stdout).toBe(first.stdout);
    expect(first.stderr + second.stderr).toBe('');
  }, 180_000);
});

describe('TypeScript against the published types', () => {
  const source = `import { createAgent, type Agent } from '@edgefleet/agent';
import { createFileAgentState } from '@edgefleet/agent/node';
import { detectDrift, numericProfile } from '@edgefleet/drift';
import { createFleetServer, type FleetServer } from '@edgefleet/fleet-server';
import { createTrust, type KeySetPayload, type ManifestPayload, type SignedDocument, verifyManifest } from '@edgefleet/protocol';
import { nodeVerify } from '@edgefleet/protocol/node';
import { createRuntime, type Outputs, type Runtime } from '@edgefleet/runtime';
import { createRuntime as createBrowserRuntime } from '@edgefleet/runtime/browser';
import { createRuntime as createNodeRuntime } from '@edgefleet/runtime/node';
import { createClient, isApiError, ok, type ItemOf, type Schema } from '@edgefleet/client';

export async function app(keySet: KeySetPayload, manifest: SignedDocument<ManifestPayload>): Promise<number> {
  // The package's entry by the resolver's conditions (node16: Node's, bundler: the browser's), and each one by name.
  const runtime: Runtime = await createRuntime({ trust: keySet, threads: 2 });
  const inNode: Runtime = await createNodeRuntime({ trust: keySet, dir: './models' });
  const inBrowser: Runtime = await createBrowserRuntime({ trust: keySet, webgpu: false, wasmPaths: '/ort/' });
  void inNode;
  void inBrowser;
  await runtime.install(manifest, new Uint8Array(0));
  const outputs: Outputs = await runtime.run('m', { x: { dtype: 'float32', shape: [1], data: new Float32Array(1) } });
  void verifyManifest;
  void nodeVerify;
  void detectDrift;
  void numericProfile;
  const state = createFileAgentState('./state');
  const agent: Agent = createAgent({ deviceId: 'd', secret: 's', mqttUrl: 'mqtt://x', serverUrl: 'http://x', runtime, trust: createTrust(keySet), state, platform: 'node' });
  const server: FleetServer = await createFleetServer({});
  await server.close();
  await agent.stop();
  // The types are real: each of these is an error, or tsc fails on an unused @ts-expect-error.
  // @ts-expect-error trust is required
  await createNodeRuntime({ dir: './models' });
  // @ts-expect-error a folder is Node's store, not the browser's
  await createBrowserRuntime({ trust: keySet, dir: './models' });
  // @ts-expect-error run() resolves to tensors, not a number
  const wrong: number = await runtime.run('m', {});
  void wrong;
  // The admin API's client, typed from the OpenAPI document.
  const fleet = createClient({ baseUrl: 'http://fleet:8080', token: 't' });
  const summary = await ok(fleet.api.GET('/v1/fleet/summary'));
  const online: number = summary.devices.online;
  for await (const device of fleet.items('/v1/devices', { params: { query: { tag: 'site=lyon' } } })) {
    const item: ItemOf<'/v1/devices'> = device;
    void item.reported?.models[0]?.active?.version;
  }
  const signed: Schema<'SignedManifest'> = (await ok(fleet.api.GET('/v1/models/{name}/versions/{version}', { params: { path: { name: 'vad', version: '1.0.0' } } }))).manifest;
  void signed.payload.artifact.sha256;
  try {
    await fleet.api.POST('/v1/rollouts/{id}/pause', { params: { path: { id: 'ro-00000000' } } });
  } catch (error) {
    if (isApiError(error, 'EF_ROLLOUT_STATE')) void error.detail;
  }
  // @ts-expect-error no such route
  await fleet.api.GET('/v1/nope');
  // @ts-expect-error the path parameter is required
  await fleet.api.GET('/v1/devices/{id}', {});
  void online;
  return outputs.y?.shape.length ?? 0;
}
`;

  it.each(['bundler', 'node16'] as const)(
    'type-checks with moduleResolution %s and skipLibCheck off',
    async (resolution) => {
      const dir = join(project, `types-${resolution}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'app.ts'), source);
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: resolution === 'bundler' ? 'ESNext' : 'Node16',
            moduleResolution: resolution === 'bundler' ? 'Bundler' : 'Node16',
            lib: ['ES2023', 'DOM'],
            types: ['node'],
            strict: true,
            noEmit: true,
            skipLibCheck: false,
          },
          include: ['app.ts'],
        }),
      );
      const tsc = join(project, 'node_modules', 'typescript', 'bin', 'tsc');
      const checked = await sh(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')]).catch((error: { stdout: string }) => error);
      expect(checked.stdout).toBe('');
    },
    120_000,
  );
});

describe('a web app built with Vite from the published packages', () => {
  let page: Page;

  it('enrolls with a real fleet server, receives a rollout, runs on WASM, and serves from IndexedDB after an offline reload', async () => {
    const app = join(project, 'web');
    await mkdir(app, { recursive: true });
    await writeFile(
      join(app, 'index.html'),
      '<!doctype html><meta charset="utf-8"><title>edgefleet app</title><script type="module" src="./main.js"></script>\n',
    );
    // What an app developer writes: the browser entries come from the packages' "browser" condition.
    await writeFile(
      join(app, 'main.js'),
      `import { createAgent, createIndexedDbAgentState, createIndexedDbTelemetryQueue } from '@edgefleet/agent';
import { createTrust } from '@edgefleet/protocol';
import { createRuntime } from '@edgefleet/runtime';

window.startMember = async ({ serverUrl, token, id }) => {
  let credential = JSON.parse(localStorage.getItem('credential') ?? 'null');
  if (!credential) {
    const response = await fetch(serverUrl + '/v1/enroll', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, id }),
    });
    if (!response.ok) throw new Error('enrollment failed: ' + response.status + ' ' + (await response.text()));
    credential = await response.json();
    localStorage.setItem('credential', JSON.stringify(credential));
  }
  const runtime = await createRuntime({ trust: credential.keySet.payload, deviceId: credential.id, webgpu: false });
  const agent = createAgent({
    deviceId: credential.id,
    secret: credential.secret,
    mqttUrl: credential.mqtt.ws,
    serverUrl,
    runtime,
    trust: createTrust(credential.keySet.payload),
    state: createIndexedDbAgentState(),
    telemetry: createIndexedDbTelemetryQueue(),
    platform: 'browser',
    reconnectPeriodMs: 500,
  });
  agent.start().catch(() => undefined);
  window.member = { runtime, agent };
};
`,
    );
    await sh(join(project, 'node_modules', '.bin', 'vite'), ['build', '--logLevel', 'warn'], { cwd: app });
    const assets = await readdir(join(app, 'dist', 'assets'));
    // Vite emitted onnxruntime-web's one .wasm file beside the bundle: the app hosts it itself.
    expect(assets.filter((f) => f.endsWith('.wasm'))).toEqual([expect.stringMatching(/^ort-wasm-simd-threaded\.asyncify-.*\.wasm$/)]);

    const site = await createArtifactServer({ folders: { '/': join(app, 'dist') } });
    const server = await startServer(join(project, 'server-web'), site.url);
    const model = mlpModel(7);
    const input = seededValues(8, 3);
    const form = new FormData();
    form.append('version', '1.0.0');
    form.append('sampleInputs', JSON.stringify([[encodeTensor('features', 'float32', [2, 4], input)]]));
    form.append('model', new Blob([model.bytes.slice()]), 'model.onnx');
    await server.api('POST', '/v1/models/mlp/versions', form);
    const { token } = await server.api('POST', '/v1/enrollment-tokens', { tags: ['web'], uses: 1 });

    const context = await launchPersistentChromium(await mkdtemp(join(tmpdir(), 'edgefleet-consumer-chromium-')));
    contexts.push(context);
    const origins = new Set<string>();
    context.on('request', (request) => origins.add(new URL(request.url()).origin));
    const open = async () => {
      const next = await context.newPage();
      await next.goto(`${site.url}/index.html`);
      await next.waitForFunction('typeof window.startMember === "function"');
      await next.evaluate(`window.startMember(${JSON.stringify({ serverUrl: server.url, token, id: 'web-1' })})`);
      return next;
    };
    const active = (target: Page) =>
      target.evaluate('window.member.runtime.models().find((m) => m.name === "mlp")?.active ?? null') as Promise<{
        version: string;
        executionProvider: string;
      } | null>;
    const infer = (target: Page) =>
      target.evaluate(
        `window.member.runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data: Float32Array.from(${JSON.stringify(Array.from(input))}) } }).then((o) => Array.from(o.scores.data))`,
      ) as Promise<number[]>;

    page = await open();
    await until(() => page.evaluate('window.member.agent.connected') as Promise<boolean>, 'the page to connect over MQTT-over-WebSocket');
    const rollout = await server.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '1.0.0',
      selector: { tags: ['web'] },
      stages: [{ percent: 100 }],
    });
    await until(async () => (await active(page))?.version === '1.0.0', 'the rollout to reach the page', 60_000);
    expect(await active(page)).toMatchObject({ version: '1.0.0', executionProvider: 'wasm' });
    await until(async () => (await server.api('GET', `/v1/rollouts/${rollout.id}`)).state === 'completed', 'the rollout to complete');
    const expected = model.reference(input);
    const online = await infer(page);
    for (const [i, value] of online.entries()) expect(Math.abs(value - (expected[i] ?? 0))).toBeLessThan(1e-5);

    // Offline: the fleet server is gone; the reloaded page restores the model from IndexedDB.
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    await page.close();
    page = await open();
    await until(async () => (await active(page))?.version === '1.0.0', 'the model restored from IndexedDB');
    expect(await infer(page)).toEqual(online);
    expect(await page.evaluate('window.member.agent.connected')).toBe(false);
    // Self-hosted: nothing came from anywhere but the app's origin and the fleet server (no CDN).
    expect([...origins].sort()).toEqual([server.url, site.url].map((u) => new URL(u).origin).sort());
    await site.close();
  }, 240_000);

  it('the recipe for other bundlers: esbuild, the .wasm copied to /ort/, and wasmPaths', async () => {
    const app = join(project, 'esbuild-app');
    await mkdir(join(app, 'public', 'ort'), { recursive: true });
    // docs/runtime.md: the two files onnxruntime-web loads at run time, in a folder of the app.
    for (const file of ['ort-wasm-simd-threaded.asyncify.wasm', 'ort-wasm-simd-threaded.asyncify.mjs']) {
      await copyFile(join(project, 'node_modules', 'onnxruntime-web', 'dist', file), join(app, 'public', 'ort', file));
    }
    // A standalone runtime (no fleet): the Node quick start's signed files, installed from URLs.
    for (const file of ['manifest.json', 'keyset.json', 'model.onnx', 'golden-vectors.json']) {
      await copyFile(join(project, 'quickstart', file), join(app, 'public', file));
    }
    await writeFile(
      join(app, 'main.js'),
      `import { createRuntime } from '@edgefleet/runtime';
window.runSilero = async () => {
  const keySet = await (await fetch('/keyset.json')).json();
  const manifest = await (await fetch('/manifest.json')).json();
  const runtime = await createRuntime({ trust: keySet, wasmPaths: '/ort/', webgpu: false });
  await runtime.install(manifest, '/model.onnx', { files: { 'golden-vectors.json': '/golden-vectors.json' } });
  const outputs = await runtime.run('silero-vad', {
    input: { dtype: 'float32', shape: [1, 512], data: new Float32Array(512).fill(0.1) },
    state: { dtype: 'float32', shape: [2, 1, 128], data: new Float32Array(256) },
    sr: { dtype: 'int64', shape: [], data: BigInt64Array.from([16000n]) },
  });
  return 'silero-vad@' + runtime.models()[0].active.version + ' on ' + runtime.models()[0].active.executionProvider + ': speech probability ' + outputs.output.data[0];
};
`,
    );
    await sh(
      join(project, 'node_modules', '.bin', 'esbuild'),
      ['main.js', '--bundle', '--format=esm', '--minify', '--platform=browser', '--outfile=public/app.js'],
      { cwd: app },
    );
    await writeFile(
      join(app, 'public', 'index.html'),
      '<!doctype html><meta charset="utf-8"><script type="module" src="/app.js"></script>\n',
    );
    const site = await createArtifactServer({ folders: { '/': join(app, 'public') } });
    const context = await launchPersistentChromium(await mkdtemp(join(tmpdir(), 'edgefleet-consumer-esbuild-')));
    contexts.push(context);
    const requests: string[] = [];
    context.on('request', (request) => requests.push(new URL(request.url()).pathname));
    const tab = await context.newPage();
    await tab.goto(`${site.url}/index.html`);
    await tab.waitForFunction('typeof window.runSilero === "function"');
    const line = (await tab.evaluate('window.runSilero()')) as string;
    // The same answer as Node's WASM or CPU run of the quick start, from the one copied .wasm file.
    expect(line).toMatch(/^silero-vad@5\.0\.0 on wasm: speech probability 0\.\d+/);
    const nodeLine = (await sh(process.execPath, ['quickstart.mjs'], { cwd: join(project, 'quickstart') })).stdout;
    const probability = (text: string) => Number(text.match(/speech probability ([\d.e-]+)/)?.[1]);
    expect(Math.abs(probability(line) - probability(nodeLine))).toBeLessThan(1e-4);
    expect(requests).toContain('/ort/ort-wasm-simd-threaded.asyncify.wasm');
    await site.close();
  }, 120_000);
});

describe('fleetctl and @edgefleet/client from their tarballs', () => {
  it('fleetctl logs in, pushes a model, rolls it out and watches it complete, and prints the fleet; a script uses the client', async () => {
    const server = await startServer(join(project, 'server-ctl'));
    const home = join(project, 'ctl-home');
    await mkdir(home, { recursive: true });
    const env = { HOME: home, XDG_CONFIG_HOME: join(home, '.config'), PATH: process.env.PATH };
    const fleetctl = (args: string[], input?: string) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(join(project, 'node_modules', '.bin', 'fleetctl'), args, {
          cwd: project,
          env,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
        child.stdin.end(input ?? '');
      });
    const { version } = JSON.parse(await readFile(join(root, 'apps', 'fleetctl', 'package.json'), 'utf8'));
    expect((await fleetctl(['-V'])).stdout.trim()).toBe(version);
    const login = await fleetctl(['login', '--server', server.url, '--with-token'], TOKEN);
    expect(login.code, login.stderr).toBe(0);
    await writeFile(join(project, 'vad.onnx'), readModel(SILERO_VAD_V5_PATH));
    await writeFile(join(project, 'samples.json'), JSON.stringify([sileroSampleInput(1)]));
    const pushed = await fleetctl(['models', 'push', 'vad.onnx', '--name', 'vad', '--version', '5.0.0', '--samples', 'samples.json']);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toContain('registered and signed vad@5.0.0');

    // A device (edgefleet-agent from its tarball), then a rollout watched to its end.
    const device = join(project, 'ctl-device');
    await mkdir(device, { recursive: true });
    const enrollment = JSON.parse(
      (await fleetctl(['tokens', 'create', '--enrollment', '--tag', 'ring=ctl', '--uses', '1', '--json'])).stdout,
    );
    await writeFile(join(device, 'enrollment-token'), enrollment.token, { mode: 0o600 });
    await writeFile(
      join(device, 'agent.json'),
      JSON.stringify({ server: server.url, dataDir: join(device, 'state'), id: 'ctl-1', tokenFile: join(device, 'enrollment-token') }),
    );
    const agent = await start(
      join(project, 'node_modules', '.bin', 'edgefleet-agent'),
      ['run', '--config', join(device, 'agent.json')],
      '"msg":"connected"',
    );
    const watched = await fleetctl(['rollouts', 'create', 'vad', '5.0.0', '--tag', 'ring=ctl', '--stages', '100%', '--watch']);
    expect(watched.code, watched.stdout + watched.stderr).toBe(0);
    expect(watched.stdout).toMatch(/state:\s+completed/);
    const status = JSON.parse((await fleetctl(['fleet', 'status', '--json'])).stdout);
    expect(status.models).toEqual([
      expect.objectContaining({
        name: 'vad',
        versions: [{ version: '5.0.0', devices: 1, online: 1, variants: [{ variant: 'reference', devices: 1 }] }],
      }),
    ]);
    expect((await fleetctl(['completion', 'bash'])).stdout).toContain('complete -F _fleetctl fleetctl');
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    // A user's own script with the client, plain JavaScript.
    await writeFile(
      join(project, 'client.mjs'),
      `import { createClient, isApiError, ok } from '@edgefleet/client';
const fleet = createClient({ baseUrl: process.argv[2], token: process.argv[3] });
const me = await ok(fleet.api.GET('/v1/whoami'));
const ids = [];
for await (const device of fleet.items('/v1/devices', { params: { query: { limit: '1' } } })) ids.push(device.id);
let missing = '';
try {
  await fleet.api.GET('/v1/devices/{id}', { params: { path: { id: 'nobody' } } });
} catch (error) {
  if (isApiError(error, 'EF_DEVICE_UNKNOWN')) missing = error.code;
}
console.log(JSON.stringify({ scope: me.scope, ids, missing }));
`,
    );
    const script = await sh(process.execPath, ['client.mjs', server.url, TOKEN]);
    expect(JSON.parse(script.stdout)).toEqual({ scope: 'admin', ids: ['ctl-1'], missing: 'EF_DEVICE_UNKNOWN' });
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  }, 240_000);
});
