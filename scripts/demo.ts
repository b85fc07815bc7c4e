/**
 * (About 420 lines: one narrative, run top to bottom, each step printing what it shows.)
 *
 * `pnpm demo`: the main job as far as the workspace goes today, on one machine with no network.
 *
 * 1. The fleet server starts with embedded defaults (SQLite, local artifacts, MQTT broker over TCP
 *    and WebSocket, a signing key and an admin token generated on first start) and serves its
 *    dashboard, where the rollout and the drift below can be watched live (run from a terminal,
 *    the demo waits for Enter there, and once more before the server goes away).
 * 2. A real model, Silero VAD v5 from @ricky0123/vad-web, is registered through the admin API with
 *    sample inputs: the server parses it, signs its manifest and computes its golden outputs.
 * 3. A real device (runtime + agent) and 9 simulated ones enroll and connect over MQTT; the model is
 *    rolled out in stages (10% → 50% → 100%): each device verifies the signed desired state,
 *    downloads the model with its own credential, checks its hash, runs the acceptance test on
 *    the execution provider it will really use and activates it.
 * 4. Drift: the simulated devices (three zones) send telemetry windows; a period of it becomes the
 *    version's reference; one zone starts hearing other audio; the server scores every group per
 *    time bucket, flags that zone only, and after 3 drifted buckets its alert reaches a webhook,
 *    HMAC-signed (a local receiver verifies the signature).
 * 5. Model quality: two versions of a tabular model are evaluated on labelled held-out data (the
 *    server builds an int8 variant of the first), the worse one's rollout is refused by the
 *    promotion policy; overridden, it first runs in a shadow stage beside the live version on a
 *    real device's inputs, and the stage stops it: it disagrees with the live version.
 * 6. The server goes away; the device restarts and keeps serving offline.
 * 7. Every attack of the threat model a device can meet is refused with its own code while the
 *    active model keeps serving. The audit log says who did what.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createAgent, createFileAgentState, createFileTelemetryQueue } from '@edgefleet/agent';
import { enrollDevices, startSimulation } from '@edgefleet/device-agent';
import { createFleetServer, verifyWebhookSignature } from '@edgefleet/fleet-server';
import {
  createTrust,
  EdgefleetError,
  encodeTensor,
  generateSigningKey,
  type KeySetPayload,
  type ManifestPayload,
  type SignedDocument,
} from '@edgefleet/protocol';
import { createRuntime, type Runtime } from '@edgefleet/runtime';
import {
  createArtifactServer,
  manifestFor,
  mlpModel,
  readModel,
  SILERO_INPUTS,
  SILERO_OUTPUTS,
  SILERO_VAD_V5_PATH,
  seededValues,
  sileroFrame,
  sileroSampleInput,
} from '@edgefleet/test-utils';

const root = fileURLToPath(new URL('..', import.meta.url));
const DEVICE = 'demo-cam-001';
const ZONES = ['north', 'south', 'east'];
const step = (text: string) => console.log(`\n▶ ${text}`);
const line = (text: string) => console.log(`  ${text}`);
const short = (hex: string) => `${hex.slice(0, 12)}…`;

/** From a terminal (not CI): wait for Enter, so the dashboard can be watched. */
const interactive = process.stdin.isTTY === true && !process.env.CI;
async function pause(prompt: string): Promise<void> {
  if (!interactive) return;
  const input = createInterface({ input: process.stdin, output: process.stdout });
  await new Promise<void>((resolve) => input.question(`  ⏸ ${prompt} `, () => resolve()));
  input.close();
}

/** The dashboard is built into the server's package by `pnpm build`; a fresh checkout builds it here (Vite, seconds). */
async function ensureDashboard(): Promise<void> {
  if (existsSync(join(root, 'apps', 'fleet-server', 'dashboard', 'index.html'))) return;
  line('building the dashboard (Vite)…');
  const vite = join(dirname(createRequire(join(root, 'apps', 'dashboard', 'package.json')).resolve('vite/package.json')), 'bin', 'vite.js');
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [vite, 'build', '--logLevel', 'warn'], {
      cwd: join(root, 'apps', 'dashboard'),
      stdio: 'inherit',
    });
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`demo failure: the dashboard build failed (exit ${code})`);
}

async function refused(what: string, attempt: () => unknown): Promise<void> {
  try {
    await attempt();
  } catch (error) {
    // Thrown by the runtime (EdgefleetError), or an admin API answer carrying its problem's code.
    const code = error instanceof EdgefleetError ? error.code : (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('EF_')) {
      line(`✗ ${what}: refused with ${code}`);
      return;
    }
    throw error;
  }
  throw new Error(`demo failure: "${what}" was accepted`);
}

/** Speech probabilities of three consecutive frames, carrying the model's recurrent state. */
async function listen(runtime: Runtime): Promise<string> {
  const probabilities: string[] = [];
  let state: Float32Array = new Float32Array(256);
  for (const frame of [sileroFrame(1).input, new Float32Array(512), sileroFrame(4).input]) {
    const outputs = await runtime.run('silero-vad', {
      input: { dtype: 'float32', shape: [1, 512], data: frame },
      state: { dtype: 'float32', shape: [2, 1, 128], data: state },
      sr: { dtype: 'int64', shape: [], data: BigInt64Array.from([16000n]) },
    });
    state = outputs.stateN?.data as Float32Array;
    probabilities.push(Number((outputs.output?.data as Float32Array | undefined)?.[0] ?? Number.NaN).toFixed(4));
  }
  return probabilities.join(', ');
}

/**
 * Runs fleetctl (from source, as the workspace has it; npm installs it as the `fleetctl` bin) with
 * the demo server's URL and token in its environment, printing what it prints; returns its exit code.
 */
function fleetctl(server: string, token: string, args: readonly string[]): Promise<number> {
  line(`$ fleetctl ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--conditions=@edgefleet/source', '--import', 'tsx', join(root, 'apps', 'fleetctl', 'src', 'bin.ts'), ...args],
      {
        cwd: root,
        env: { ...process.env, EDGEFLEET_SERVER: server, EDGEFLEET_TOKEN: token, NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (text) => line(`  ${text}`));
    }
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

async function api<T>(base: string, token: string, method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body instanceof FormData || body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: body instanceof FormData ? body : JSON.stringify(body) }),
  });
  const json = (await response.json()) as T & { code?: string; detail?: string };
  if (!response.ok)
    throw Object.assign(new Error(`${method} ${path}: ${response.status} ${json.code} ${json.detail}`), { code: json.code });
  return json;
}

async function main(): Promise<void> {
  console.log('edgefleet demo: a real model registered on the fleet server, delivered to a device, run offline, and defended');
  const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-demo-server-'));
  const deviceDir = await mkdtemp(join(tmpdir(), 'edgefleet-demo-device-'));
  const edgeDir = await mkdtemp(join(tmpdir(), 'edgefleet-demo-edge-'));
  try {
    // Where drift alerts go: a local receiver standing in for the retraining pipeline.
    const webhookSecret = randomBytes(24).toString('base64url');
    const alerts: { event: string; verified: boolean; body: string }[] = [];
    const receiver = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const signature = request.headers['x-edgefleet-signature'] as string | undefined;
        alerts.push({
          event: String(request.headers['x-edgefleet-event']),
          verified: verifyWebhookSignature(webhookSecret, signature, body),
          body,
        });
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const webhookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/retrain`;

    step('The fleet server starts with embedded defaults');
    await ensureDashboard();
    const server = await createFleetServer({
      config: {
        dataDir,
        port: 0,
        mqttPort: 0,
        // Demo pacing: drift scored every half second over 1-second buckets (defaults: 10 s, 5 min).
        driftBucketSeconds: 1,
        driftEvaluateMs: 500,
        webhookUrl,
        webhookSecret,
      },
    });
    const token = server.createdAdminToken ?? '';
    line(`admin API     ${server.url}   (OpenAPI: ${server.url}/docs)`);
    line(`MQTT          ${server.broker.urls.tcp}   ${server.broker.urls.ws}`);
    line(`data folder   ${dataDir} (SQLite, artifacts, signing key with mode 0600)`);
    line(`admin token   in ${server.adminTokenFile}   (mode 0600; never printed or logged)`);
    line(`drift webhook ${webhookUrl}   (HMAC-SHA256 signed)`);
    const page = await fetch(`${server.url}/`);
    if (!page.ok || !(await page.text()).includes('<script type="module"'))
      throw new Error(`demo failure: the dashboard answers ${page.status}`);
    line(`dashboard     ${server.url}/   (sign in with the admin token: cat ${server.adminTokenFile})`);
    await pause('Open the dashboard to watch the rollout and the drift live, then press Enter to go on.');

    step('Silero VAD v5 (from @ricky0123/vad-web) is registered with a sample input');
    const bytes = readModel(SILERO_VAD_V5_PATH);
    const form = new FormData();
    form.append('version', '5.0.0');
    form.append('metadata', JSON.stringify({ 'source.package': '@ricky0123/vad-web' }));
    form.append('sampleInputs', JSON.stringify([sileroSampleInput(1)]));
    form.append('model', new Blob([bytes.slice()]), 'silero_vad_v5.onnx');
    const registered = await api<{ sha256: string; size: number; manifest: SignedDocument<ManifestPayload> }>(
      server.url,
      token,
      'POST',
      '/v1/models/silero-vad/versions',
      form,
    );
    const manifest = registered.manifest;
    const model = manifest.payload.model;
    line(
      `silero-vad@5.0.0: ${registered.size} bytes, sha256 ${short(registered.sha256)}, opset ${model.opsets.map((o) => o.version).join('/')}, ${model.operators.length} operator types`,
    );
    line(`inputs ${model.inputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(',')}]`).join(', ')}`);
    line(`loaded in onnxruntime-web on the server, which computed the golden outputs: a hash-listed file the signed manifest names`);

    step(`${DEVICE} (a real runtime + agent) and 9 simulated devices enroll; each pins the server's key set`);
    const device = await api<{ id: string; secret: string; keySet: SignedDocument<KeySetPayload>; mqtt: { tcp: string } }>(
      server.url,
      token,
      'POST',
      '/v1/devices',
      {
        id: DEVICE,
        tags: ['site=demo'],
      },
    );
    const keySet = device.keySet.payload;
    line(`credentials issued once (stored as sha256); trusted key ${short(keySet.keys[0]?.keyId ?? '')}`);
    const basic = `Basic ${Buffer.from(`${DEVICE}:${device.secret}`).toString('base64')}`;
    const artifactUrl = `${server.url}/v1/artifacts/${registered.sha256}`;
    const runtime = await createRuntime({ dir: deviceDir, trust: keySet, deviceId: DEVICE });
    runtime.on('acceptance-passed', ({ executionProvider, maxAbsoluteError }) =>
      line(
        `${DEVICE}: ✓ acceptance test on ${executionProvider}, max |error| ${maxAbsoluteError.toExponential(2)} against the server's golden output`,
      ),
    );
    runtime.on('activated', ({ model, executionProvider, providers }) => {
      const measured = providers
        .map((p) => `${p.executionProvider} ${p.passed ? (p.p50Ms !== undefined ? `p50 ${p.p50Ms} ms` : 'passed') : 'failed'}`)
        .join(', ');
      line(`${DEVICE}: ✓ ${model.name}@${model.version} active on ${executionProvider} (chosen on this device: ${measured})`);
    });
    const agent = createAgent({
      deviceId: DEVICE,
      secret: device.secret,
      mqttUrl: device.mqtt.tcp,
      serverUrl: server.url,
      runtime,
      trust: createTrust(keySet),
      state: createFileAgentState(deviceDir),
      platform: 'node',
    });
    await agent.start();
    const simulatedDevices: { id: string; secret: string }[] = [];
    for (const zone of ZONES) {
      const enrollment = await api<{ token: string }>(server.url, token, 'POST', '/v1/enrollment-tokens', {
        tags: ['site=demo', `zone=${zone}`],
        uses: 3,
      });
      simulatedDevices.push(...(await enrollDevices(server.url, enrollment.token, 3, `demo-sim-${zone}`)).devices);
    }
    let shifted = false;
    const simulation = await startSimulation({
      serverUrl: server.url,
      mqttUrl: device.mqtt.tcp,
      keySet,
      devices: simulatedDevices,
      // Each simulated device sends a telemetry window of 20 runs every 250 ms; once `shifted`, the
      // east zone's audio is louder (+0.5 on every sample).
      telemetry: { windowMs: 250, runs: 20, shiftInput: 'input', shift: (id) => (shifted && id.startsWith('demo-sim-east') ? 0.5 : 0) },
    });
    line(`10 devices connected over MQTT (${device.mqtt.tcp}); simulated ones in zones ${ZONES.join(', ')}`);

    step('A staged rollout with fleetctl: 10% → 50% → 100%, any failure rolls it back; watched until it ends');
    const watched = await fleetctl(server.url, token, [
      'rollouts',
      'create',
      'silero-vad',
      '5.0.0',
      '--tag',
      'site=demo',
      '--stages',
      '10%:1s,50%:1s,100%',
      '--max-failure-rate',
      '0',
      '--watch',
      '--interval',
      '1s',
    ]);
    if (watched !== 0) throw new Error(`demo failure: fleetctl rollouts watch ended with exit code ${watched}`);
    line(`on the dashboard: ${server.url}/rollouts (each stage, its gates and devices)`);
    line(`simulated devices on 5.0.0: ${simulation.countActive('silero-vad', '5.0.0')}/9`);
    await agent.idle();
    const before = await listen(runtime);
    line(`${DEVICE} speech probabilities of three frames: ${before}`);
    await agent.stop();
    await runtime.close();

    step('Drift: two seconds of fleet telemetry become the reference; then the east zone starts hearing louder audio');
    const referenceFrom = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const reference = await api<{ windows: number; runs: number; features: string[] }>(
      server.url,
      token,
      'POST',
      '/v1/models/silero-vad/versions/5.0.0/reference',
      { from: referenceFrom, to: new Date().toISOString() },
    );
    line(`reference: ${reference.windows} windows, ${reference.runs} runs, features ${reference.features.join(', ')}`);
    shifted = true;
    const shiftedAt = Date.now();
    let lastStatus = '';
    for (;;) {
      const drift = await api<{ status: string; groups: { group: string; status: string; latest: { driftedFeatures: string[] } }[] }>(
        server.url,
        token,
        'GET',
        '/v1/models/silero-vad/versions/5.0.0/drift',
      );
      const zones = drift.groups.filter((g) => g.group.startsWith('zone='));
      const text = zones
        .map((g) => `${g.group} ${g.status}${g.latest.driftedFeatures.length ? ` (${g.latest.driftedFeatures.join(', ')})` : ''}`)
        .join('   ');
      if (text !== lastStatus) line(`${((Date.now() - shiftedAt) / 1000).toFixed(1)} s after the shift: ${text}`);
      lastStatus = text;
      if (alerts.some((a) => a.body.includes('"group":"zone=east"'))) break;
      if (Date.now() - shiftedAt > 30_000) throw new Error('demo failure: no drift alert for zone=east within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const alert = alerts.find((a) => a.body.includes('"group":"zone=east"'));
    const fired = JSON.parse(alert?.body ?? '{}') as { alert: { group: string; features: string[]; windows: number } };
    line(
      `${alert?.verified ? '✓' : '✗'} webhook ${alert?.event} for ${fired.alert.group}: ${fired.alert.features.join(', ')} drifted for ${fired.alert.windows} buckets in a row (signature verified)`,
    );
    const zonesAlerted = new Set(
      alerts.map((a) => (JSON.parse(a.body) as { alert: { group: string } }).alert.group).filter((g) => g.startsWith('zone=')),
    );
    line(
      `zones alerted: ${[...zonesAlerted].join(', ')} (north and south never drifted; the groups of all devices, * and site=demo, hold the east zone too)`,
    );
    if (!alert?.verified || zonesAlerted.size !== 1)
      throw new Error('demo failure: the drift alert is not the east zone alone, or not signed');
    line(`on the dashboard: ${server.url}/drift/silero-vad/5.0.0?group=zone%3Deast (charts, alert, reference against live)`);
    step('fleetctl shows the fleet and the drift of the east zone');
    await fleetctl(server.url, token, ['fleet', 'status']);
    await fleetctl(server.url, token, [
      'drift',
      'show',
      'silero-vad@5.0.0',
      '--group',
      'zone=east',
      '--since',
      '10m',
      '--feature',
      'input.mean',
      '--height',
      '4',
    ]);
    await simulation.stop();
    receiver.close();

    step('The device is revoked for a moment: the server refuses it at once');
    const refusedDownload = await fetch(artifactUrl, { headers: { authorization: basic } });
    line(`artifact download with its credential: HTTP ${refusedDownload.status}`);
    await api(server.url, token, 'POST', `/v1/devices/${DEVICE}/revoke`);
    const afterRevoke = await fetch(artifactUrl, { headers: { authorization: basic } });
    line(`after revocation: HTTP ${afterRevoke.status} ${((await afterRevoke.json()) as { code: string }).code}`);

    const audit = await api<{ entries: { at: string; actor: string; action: string; target: string }[] }>(
      server.url,
      token,
      'GET',
      '/v1/audit?limit=500',
    );
    step('The audit log says who did what (per-device desired-state entries left out here)');
    for (const entry of audit.entries
      .reverse()
      .filter((e) => e.action !== 'device.desired.set' && !e.target.startsWith('device:demo-sim'))) {
      line(`${entry.at}  ${entry.actor.padEnd(20)} ${entry.action.padEnd(24)} ${entry.target}`);
    }

    step('Two more versions are registered: Silero VAD v6 as 6.0.0, and an old build as 4.0.0');
    const v6 = readModel(SILERO_VAD_V5_PATH.replace('silero_vad_v5.onnx', 'silero_vad_v6.onnx'));
    const register = async (version: string, model: Uint8Array) => {
      const upload = new FormData();
      upload.append('version', version);
      upload.append('model', new Blob([model.slice()]), 'model.onnx');
      return (await api<{ manifest: SignedDocument<ManifestPayload> }>(server.url, token, 'POST', '/v1/models/silero-vad/versions', upload))
        .manifest;
    };
    const next = await register('6.0.0', v6);
    const older = await register('4.0.0', bytes);
    line(
      `signed by the server: ${next.payload.name}@${next.payload.version} (${short(next.payload.artifact.sha256)}), ${older.payload.name}@${older.payload.version}`,
    );

    step("A careless admin's mistakes are refused with a code that names the right way");
    await refused('a rollout with an empty selector (it would mean the whole fleet)', () =>
      api(server.url, token, 'POST', '/v1/rollouts', { model: 'silero-vad', version: '6.0.0', selector: {}, stages: [{ percent: 100 }] }),
    );
    await refused('a plain rollout of 4.0.0 to devices on 5.0.0 (a rollback must be signed as one: "rollback": true)', () =>
      api(server.url, token, 'POST', '/v1/rollouts', {
        model: 'silero-vad',
        version: '4.0.0',
        selector: { tags: ['site=demo'] },
        stages: [{ percent: 100 }],
      }),
    );
    await refused('deleting 5.0.0 while the fleet runs it', () => api(server.url, token, 'DELETE', '/v1/models/silero-vad/versions/5.0.0'));

    step(
      'Model quality: two versions of a tabular model are judged on labelled held-out data before any device sees them; the server adds an int8 build of the first',
    );
    const churn = [mlpModel(7), mlpModel(8)] as const;
    const qualityDir = await mkdtemp(join(tmpdir(), 'edgefleet-demo-quality-'));
    await writeFile(join(qualityDir, 'churn.onnx'), churn[0].bytes);
    await writeFile(
      join(qualityDir, 'samples.json'),
      JSON.stringify([[encodeTensor('features', 'float32', [4, 4], seededValues(16, 70, 2))]]),
    );
    const pushed = await fleetctl(server.url, token, [
      'models',
      'push',
      join(qualityDir, 'churn.onnx'),
      '--name',
      'churn',
      '--version',
      '1.0.0',
      '--samples',
      join(qualityDir, 'samples.json'),
      '--quantize',
      'int8',
    ]);
    if (pushed !== 0) throw new Error(`demo failure: fleetctl models push churn@1.0.0 exited ${pushed}`);
    const upload = new FormData();
    upload.append('version', '1.1.0');
    upload.append('model', new Blob([churn[1].bytes.slice()]), 'churn.onnx');
    await api(server.url, token, 'POST', '/v1/models/churn/versions', upload);
    // A synthetic held-out set: 300 rows, labelled with 1.0.0's answers, one label in ten changed.
    const heldOut = join(qualityDir, 'held-out.csv');
    const rows = Array.from({ length: 300 }, (_, i) => seededValues(4, 7000 + i, 2));
    const classOf = (x: Float32Array) => {
      const scores = churn[0].reference(x);
      return scores.indexOf(Math.max(...scores));
    };
    await writeFile(
      heldOut,
      `a,b,c,d,label\n${rows.map((x, i) => `${[...x].join(',')},${(classOf(x) + (i % 10 === 0 ? 1 : 0)) % 3}`).join('\n')}\n`,
    );
    await fleetctl(server.url, token, ['models', 'evaluate', 'churn@1.0.0', heldOut, '--task', 'classification']);
    // The int8 build was evaluated beside it, on the same data: its accuracy against the model's.
    type Variants = { variants: { name: string; size: number; sizeRatio: number; evaluation: { delta: Record<string, number> } | null }[] };
    let int8: Variants['variants'][number] | undefined;
    for (let tries = 0; !int8?.evaluation && tries < 600; tries++) {
      if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      int8 = (await api<Variants>(server.url, token, 'GET', '/v1/models/churn/versions/1.0.0')).variants[0];
    }
    const delta = int8?.evaluation?.delta.accuracy;
    if (delta === undefined) throw new Error('demo failure: the int8 variant of churn@1.0.0 was not evaluated');
    line(
      `✓ churn@1.0.0's int8 variant: ${int8?.size} bytes (${Math.round((int8?.sizeRatio ?? 0) * 100)}% of the model), accuracy ${delta >= 0 ? '+' : ''}${delta.toFixed(4)} against it on the same held-out data`,
    );
    await fleetctl(server.url, token, ['models', 'policy', 'churn', '--min', 'accuracy=0.8', '--max-regression', 'accuracy=0.02']);
    await fleetctl(server.url, token, ['models', 'evaluate', 'churn@1.1.0', heldOut, '--task', 'classification']);
    const judged = await fleetctl(server.url, token, ['rollouts', 'create', 'churn', '1.1.0', '--tag', 'site=demo', '--stages', '100%']);
    if (judged !== 5) throw new Error(`demo failure: a rollout of churn@1.1.0 against its promotion policy exited ${judged}, not 5`);
    line('✗ a rollout of churn@1.1.0 (other weights: far less accurate on the held-out data): refused with EF_POLICY_FAILED');

    step(
      "A shadow stage: the admin overrides the policy, but churn@1.1.0 first runs in shadow beside 1.0.0 on a real device's live inputs, and never answers",
    );
    const edge = await api<{ id: string; secret: string; keySet: SignedDocument<KeySetPayload>; mqtt: { tcp: string } }>(
      server.url,
      token,
      'POST',
      '/v1/devices',
      { id: 'demo-edge-001', tags: ['site=edge'] },
    );
    const edgeRuntime = await createRuntime({ dir: edgeDir, trust: keySet, deviceId: edge.id });
    const edgeAgent = createAgent({
      deviceId: edge.id,
      secret: edge.secret,
      mqttUrl: edge.mqtt.tcp,
      serverUrl: server.url,
      runtime: edgeRuntime,
      trust: createTrust(keySet),
      state: createFileAgentState(edgeDir),
      // Its telemetry (with the shadow's comparisons) goes through a durable outbox.
      telemetry: createFileTelemetryQueue(edgeDir),
      platform: 'node',
    });
    await edgeAgent.start();
    await api(server.url, token, 'PUT', `/v1/devices/${edge.id}/desired/churn`, { version: '1.0.0' });
    const churnOn = (version: string) => edgeRuntime.models().find((m) => m.name === 'churn')?.active?.version === version;
    for (let tries = 0; !churnOn('1.0.0') && tries < 600; tries++) await new Promise((resolve) => setTimeout(resolve, 50));
    if (!churnOn('1.0.0')) throw new Error('demo failure: demo-edge-001 did not activate churn@1.0.0');
    line(`${edge.id}: churn@1.0.0 active (variant ${edgeRuntime.models().find((m) => m.name === 'churn')?.active?.variant})`);
    const shadowExit = await fleetctl(server.url, token, [
      'rollouts',
      'create',
      'churn',
      '1.1.0',
      '--device',
      edge.id,
      '--shadow',
      '1',
      '--shadow-rate',
      '1',
      '--min-shadow-agreement',
      '0.9',
      '--min-shadow-runs',
      '40',
      '--stages',
      '100%',
      '--override-policy',
      'try it on live data in shadow first',
    ]);
    if (shadowExit !== 0) throw new Error(`demo failure: the shadow rollout of churn@1.1.0 exited ${shadowExit}`);
    const [shadowRollout] = (await api<{ rollouts: { id: string; state: string }[] }>(server.url, token, 'GET', '/v1/rollouts?limit=1'))
      .rollouts;
    // Live traffic on the device: it answers with 1.0.0; 1.1.0 runs on the same inputs once the caller has its answer.
    let served = 0;
    // The rollout is looked at twice a second (the admin API rate-limits a token), for at most a minute.
    for (let i = 0; i < 120; i++) {
      const state = (await api<{ state: string }>(server.url, token, 'GET', `/v1/rollouts/${shadowRollout?.id}`)).state;
      if (state !== 'running' && state !== 'rolling_back') break;
      for (let j = 0; j < 50; j++) {
        await edgeRuntime.run('churn', { features: { dtype: 'float32', shape: [1, 4], data: seededValues(4, 9000 + served++, 2) } });
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      edgeRuntime.flushTelemetry();
    }
    await fleetctl(server.url, token, ['rollouts', 'show', shadowRollout?.id ?? '']);
    const ended = await api<{ state: string; reason: { gate?: string; agreement?: number; runs?: number } | null }>(
      server.url,
      token,
      'GET',
      `/v1/rollouts/${shadowRollout?.id}`,
    );
    if (ended.state !== 'rolled_back' || ended.reason?.gate !== 'minShadowAgreement') {
      throw new Error(`demo failure: the shadow stage did not stop churn@1.1.0 (${ended.state}, ${JSON.stringify(ended.reason)})`);
    }
    await edgeAgent.idle();
    line(
      `✗ churn@1.1.0 stopped in its shadow stage: it picked the live version's class on ${Math.round((ended.reason.agreement ?? 0) * 100)}% of the ${ended.reason.runs} live inputs compared (at least 90% asked); ${edge.id} answered all ${served} with ${churnOn('1.0.0') ? '1.0.0' : '?'}`,
    );
    await edgeAgent.stop();
    await edgeRuntime.close();

    await pause(`The dashboard (${server.url}/) still shows the fleet, the rollout and the drift: press Enter, and the server goes away.`);
    step('The server goes away and the device restarts: it serves from its store, offline');
    await server.close();
    const offline = await createRuntime({
      dir: deviceDir,
      trust: keySet,
      deviceId: DEVICE,
      fetch: () => Promise.reject(new TypeError('network is down')),
    });
    const after = await listen(offline);
    line(`${after === before ? '✓' : '✗'} restored ${offline.models()[0]?.active?.version} and got the same outputs: ${after}`);
    if (after !== before) throw new Error('demo failure: outputs changed across the restart');
    await offline.close();

    step('Attacks from the threat model, each refused with its own code; the active model keeps serving');
    const victim = await createRuntime({ dir: deviceDir, trust: keySet, deviceId: DEVICE });
    const attacker = generateSigningKey();
    const evil = await createArtifactServer();
    evil.set(
      '/tampered',
      v6.map((b, i) => (i === 5000 ? b ^ 1 : b)),
    );
    evil.set('/endless', v6, { endless: true });
    evil.set('/model', v6);
    const rogue = manifestFor({
      name: 'silero-vad',
      version: '6.0.0',
      bytes: v6,
      inputs: SILERO_INPUTS,
      outputs: SILERO_OUTPUTS,
      key: attacker,
    });
    await refused('a model signed by a key the device does not trust (arbitrary model)', () => victim.install(rogue, `${evil.url}/model`));
    const edited = structuredClone(next);
    edited.payload.runtime.executionProviders = ['wasm'];
    await refused('a signed manifest edited in transit', () => victim.install(edited, `${evil.url}/model`));
    await refused('a mirror serving other bytes than the signed ones (substituted model)', () =>
      victim.install(next, `${evil.url}/tampered`),
    );
    await refused('a mirror that never stops sending (endless data)', () => victim.install(next, `${evil.url}/endless`));
    await refused('a validly signed older version without a signed rollback (rollback attack)', () =>
      victim.install(older, `${evil.url}/model`),
    );
    await evil.close();
    line(`✓ still serving ${victim.models()[0]?.active?.version}: ${await listen(victim)}`);
    await victim.close();
  } finally {
    await rm(dataDir, { recursive: true, force: true });
    await rm(deviceDir, { recursive: true, force: true });
    await rm(edgeDir, { recursive: true, force: true });
  }
  console.log('\nDone. See docs/protocol.md, docs/runtime.md and docs/fleet-server.md for what each part guarantees.');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
