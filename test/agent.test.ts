/**
 * A real fleet: the fleet server (registry, embedded broker), and devices running the real
 * runtime + agent over real MQTT. Desired state goes down signed; the devices converge.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Agent, createAgent, createFileAgentState } from '@edgefleet/agent';
import { createFleetServer, type FleetServer } from '@edgefleet/fleet-server';
import {
  createDesiredState,
  createTopicScheme,
  createTrust,
  encodeMessage,
  generateSigningKey,
  type KeySetPayload,
  type SignedDocument,
  signDesiredState,
} from '@edgefleet/protocol';
import { createRuntime, createWasmEngine, type Runtime } from '@edgefleet/runtime';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let server: FleetServer;
let auth: { authorization: string };
let keySet: KeySetPayload;

async function api(method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown) {
  const response = await server.app.inject({
    method,
    url,
    headers: auth,
    ...(payload === undefined ? {} : { payload: payload as object }),
  });
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
  return response.statusCode === 204 ? undefined : response.json();
}

async function register(name: string, version: string, bytes: Uint8Array, fields: Record<string, unknown> = {}) {
  const form = new FormData();
  form.append('version', version);
  for (const [key, value] of Object.entries(fields)) form.append(key, JSON.stringify(value));
  form.append('model', new Blob([bytes.slice()]), 'model.onnx');
  const response = await server.app.inject({ method: 'POST', url: `/v1/models/${name}/versions`, headers: auth, payload: form });
  if (response.statusCode !== 201) throw new Error(response.body);
  return response.json();
}

interface Device {
  id: string;
  secret: string;
  dir: string;
  runtime: Runtime;
  agent: Agent;
  downloads: () => number;
}

async function startDevice(id: string, existing?: { secret: string; dir: string }): Promise<Device> {
  const credentials = existing ?? {
    ...(await api('POST', '/v1/devices', { id, tags: ['fleet=test'] })),
    dir: await mkdtemp(join(tmpdir(), `edgefleet-agent-${id}-`)),
  };
  let downloads = 0;
  const runtime = await createRuntime({ dir: credentials.dir, engines: [createWasmEngine(1)], trust: keySet, deviceId: id });
  runtime.on('download-progress', ({ bytes }) => {
    if (bytes > 0) downloads++;
  });
  const agent = createAgent({
    deviceId: id,
    secret: credentials.secret,
    mqttUrl: server.broker.urls.tcp,
    serverUrl: server.url,
    runtime,
    trust: createTrust(keySet),
    state: createFileAgentState(credentials.dir),
    platform: 'node',
    reconnectPeriodMs: 200,
  });
  await agent.start();
  return { id, secret: credentials.secret, dir: credentials.dir, runtime, agent, downloads: () => downloads };
}

async function stopDevice(device: Device): Promise<void> {
  await device.agent.stop();
  await device.runtime.close();
}

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const activeVersion = (device: Device, model = 'mlp') => device.runtime.models().find((m) => m.name === model)?.active?.version;

beforeAll(async () => {
  server = await createFleetServer({
    env: {},
    config: { dataDir: await mkdtemp(join(tmpdir(), 'edgefleet-fleet-')), port: 0, mqttPort: 0 },
  });
  auth = { authorization: `Bearer ${server.createdAdminToken}` };
  keySet = ((await server.app.inject({ method: 'GET', url: '/v1/keyset' })).json() as SignedDocument<KeySetPayload>).payload;
  await register('mlp', '1.0.0', mlpModel(7).bytes, {
    sampleInputs: [
      [{ name: 'features', dtype: 'float32', shape: [1, 4], data: Buffer.from(seededValues(4, 1).buffer).toString('base64url') }],
    ],
  });
  await register('mlp', '2.0.0', mlpModel(8).bytes);
}, 60_000);

afterAll(async () => {
  await server?.close();
});

describe('agent and server over real MQTT', () => {
  it('installs the version the server assigns, reports it, and converges again after a change', async () => {
    const device = await startDevice('agent-1');
    await api('PUT', '/v1/devices/agent-1/desired/mlp', { version: '1.0.0' });
    await until(() => activeVersion(device) === '1.0.0', 'mlp 1.0.0 active');
    const { scores } = await device.runtime.run('mlp', { features: { dtype: 'float32', shape: [1, 4], data: seededValues(4, 2) } });
    expect(scores?.shape).toEqual([1, 3]);
    await until(async () => (await api('GET', '/v1/devices/agent-1')).reported?.models?.[0]?.active?.version === '1.0.0', 'reported 1.0.0');
    await api('PUT', '/v1/devices/agent-1/desired/mlp', { version: '2.0.0' });
    await until(() => activeVersion(device) === '2.0.0', 'mlp 2.0.0 active');
    const view = await api('GET', '/v1/devices/agent-1');
    await until(async () => (await api('GET', '/v1/devices/agent-1')).reported?.appliedSequence === 2, 'applied sequence 2');
    expect(view.online).toBe(true);
    await stopDevice(device);
  });

  it('does not reinstall after a restart or when the same document arrives twice', async () => {
    const device = await startDevice('agent-2');
    await api('PUT', '/v1/devices/agent-2/desired/mlp', { version: '1.0.0' });
    await until(() => activeVersion(device) === '1.0.0', 'mlp 1.0.0 active');
    const downloaded = device.downloads();
    const document = await api('GET', '/v1/devices/agent-2/desired');
    await server.broker.publish(createTopicScheme().build('desired', 'agent-2'), JSON.stringify(document), { retain: true });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await device.agent.idle();
    expect(device.downloads()).toBe(downloaded);
    await stopDevice(device);
    const restarted = await startDevice('agent-2', device);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await restarted.agent.idle();
    expect(activeVersion(restarted)).toBe('1.0.0');
    expect(restarted.downloads()).toBe(0);
    await stopDevice(restarted);
  });

  it('converges when it comes back after missing changes while offline', async () => {
    const device = await startDevice('agent-3');
    await stopDevice(device);
    await api('PUT', '/v1/devices/agent-3/desired/mlp', { version: '1.0.0' });
    await api('PUT', '/v1/devices/agent-3/desired/mlp', { version: '2.0.0' });
    const back = await startDevice('agent-3', device);
    await until(() => activeVersion(back) === '2.0.0', 'mlp 2.0.0 after coming back');
    await stopDevice(back);
  });

  it('rolls back to an older version only when the server signs a rollback', async () => {
    const device = await startDevice('agent-4');
    await api('PUT', '/v1/devices/agent-4/desired/mlp', { version: '2.0.0' });
    await until(() => activeVersion(device) === '2.0.0', 'mlp 2.0.0');
    await api('PUT', '/v1/devices/agent-4/desired/mlp', { version: '1.0.0' });
    await until(() => device.runtime.models()[0]?.lastError?.code === 'EF_MODEL_VERSION_ROLLBACK', 'the downgrade refused');
    expect(activeVersion(device)).toBe('2.0.0');
    await api('PUT', '/v1/devices/agent-4/desired/mlp', { version: '1.0.0', rollback: true });
    await until(() => activeVersion(device) === '1.0.0', 'mlp rolled back to 1.0.0');
    await stopDevice(device);
  });

  it('refuses a desired state forged by someone who can publish but lacks the fleet key', async () => {
    const device = await startDevice('agent-5');
    await api('PUT', '/v1/devices/agent-5/desired/mlp', { version: '1.0.0' });
    await until(() => activeVersion(device) === '1.0.0', 'mlp 1.0.0');
    const forger = generateSigningKey();
    const forged = signDesiredState(createDesiredState({ deviceId: 'agent-5', sequence: 999, models: [], remove: ['mlp'] }), [forger]);
    const events: { kind: string; error?: { code: string } }[] = [];
    const off = server.broker.onDeviceMessage((address, payload) => {
      if (address.deviceId === 'agent-5' && address.kind === 'events') events.push(JSON.parse(Buffer.from(payload).toString('utf8')));
    });
    // A privileged publisher (it could be anyone with broker access) without the fleet's signing key.
    await server.broker.publish(createTopicScheme().build('desired', 'agent-5'), encodeMessage('desired', forged), { retain: true });
    await until(() => events.some((e) => e.kind === 'desired-state-rejected'), 'the rejection event');
    off();
    await device.agent.idle();
    expect(activeVersion(device)).toBe('1.0.0');
    expect(events.find((e) => e.kind === 'desired-state-rejected')?.error?.code).toBe('EF_SIGNATURE_UNKNOWN_KEY');
    await stopDevice(device);
  });
});
