/**
 * Scale-out, end to end: two fleet server replicas (their own processes) on one PostgreSQL, behind
 * a load balancer, with devices on a real Mosquitto 2 that the replicas manage through dynamic
 * security; 200 simulated agents (the real agent code) streaming telemetry.
 *
 * A staged rollout runs; the replica that drives it (the holder of its lease) is killed with -9 in
 * the middle of a stage; the other takes the lease over and finishes. Then the invariants: every
 * device runs the version, installed once; no device was ever sent two different documents under
 * one sequence number (every desired document the broker carried, read by an observer); no
 * telemetry window stored twice, none that the server acknowledged missing.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrollDevices, type Simulation, startSimulation } from '@edgefleet/device-agent';
import { createTestPostgresDatabase, dropTestPostgresDatabase } from '@edgefleet/fleet-server/testing';
import type { KeySetPayload, SignedDocument } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import { type Mosquitto, mosquittoMissing, startMosquitto } from '@edgefleet/test-utils/brokers';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { adminApi, freePort, listAll, startChildServer } from './helpers/child-server.ts';
import { until } from './helpers/fleet.ts';
import { type LoadBalancer, startLoadBalancer } from './helpers/load-balancer.ts';

const TOKEN = 'replicas-admin-token-0123456789abcdefghijk';
const DEVICES = 200;
const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  // Each step gets 15 s: one that hangs (a simulation stopping into a dead broker) must not leave
  // the brokers and servers after it running.
  for (const step of cleanup.reverse()) {
    await Promise.race([Promise.resolve(step()).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 15_000))]);
  }
}, 120_000);

const skip = !process.env.EDGEFLEET_TEST_DATABASE_URL ? 'needs PostgreSQL (EDGEFLEET_TEST_DATABASE_URL)' : mosquittoMissing();

interface ScaledFleet {
  readonly api: ReturnType<typeof adminApi>;
  readonly mosquitto: Mosquitto;
  readonly databaseUrl: string;
  readonly replicas: ChildProcess[];
  readonly simulation: Simulation;
  /** Every desired document the broker carried: device → sequence → distinct bodies (sha256). */
  readonly documents: Map<string, Map<number, Set<string>>>;
  rollout(stages: readonly Record<string, unknown>[]): Promise<{ id: string }>;
  /** Waits until the rollout leaves `running`; its view then. */
  ended(id: string, timeoutMs?: number): Promise<{ state: string; reason?: unknown; stages?: unknown }>;
}

/**
 * PostgreSQL, Mosquitto, two replicas behind a load balancer, mlp@1.0.0 registered, DEVICES agents
 * enrolled (through both replicas) and connected, an observer of every desired document.
 */
async function startScaledFleet(name: string): Promise<ScaledFleet> {
  const databaseUrl = (await createTestPostgresDatabase(name)) as string;
  cleanup.push(() => dropTestPostgresDatabase(databaseUrl));
  const mosquitto = await startMosquitto();
  cleanup.push(() => mosquitto.stop());
  const env = {
    EDGEFLEET_DATABASE_URL: databaseUrl,
    EDGEFLEET_BROKER_URL: mosquitto.url,
    EDGEFLEET_BROKER_USERNAME: mosquitto.admin.username,
    EDGEFLEET_BROKER_PASSWORD: mosquitto.admin.password,
  };
  const dirs = [await mkdtemp(join(tmpdir(), `edgefleet-${name}-a-`)), await mkdtemp(join(tmpdir(), `edgefleet-${name}-b-`))];
  const ports = [await freePort(), await freePort()];
  const replicas: ChildProcess[] = [];
  const start = async (i: number) => {
    const child = await startChildServer({ dataDir: dirs[i] as string, port: ports[i] as number, mqttPort: 0, adminToken: TOKEN, env });
    cleanup.push(() => child.kill('SIGKILL'));
    replicas[i] = child;
  };
  await start(0);
  // Replicas sign with one key: the operator gives the second the first one's keys/ folder.
  await cp(join(dirs[0] as string, 'keys'), join(dirs[1] as string, 'keys'), { recursive: true });
  await start(1);
  const balancer: LoadBalancer = await startLoadBalancer(ports as number[]);
  cleanup.push(() => balancer.close());
  const direct = adminApi(balancer.url, TOKEN);
  // A request on a kept-alive connection to a replica that just died fails; clients behind a
  // load balancer retry it, and so does this one (its next connection reaches a live replica).
  const api: typeof direct = async (method, path, body) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await direct(method, path, body);
      } catch (error) {
        if (attempt >= 3 || !(error instanceof TypeError)) throw error;
      }
    }
  };

  const form = new FormData();
  form.append('version', '1.0.0');
  form.append('model', new Blob([mlpModel(7).bytes.slice()]), 'model.onnx');
  await api('POST', '/v1/models/mlp/versions', form);
  const keySet = ((await (await fetch(`${balancer.url}/v1/keyset`)).json()) as SignedDocument<KeySetPayload>).payload;
  const { token } = await api('POST', '/v1/enrollment-tokens', { tags: [name], uses: DEVICES });
  // Enrolled through both replicas (the balancer alternates): each registers its devices with Mosquitto.
  const { devices } = await enrollDevices(balancer.url, token, DEVICES, name.slice(0, 3), 16);
  expect(balancer.taken.get(ports[1] as number)).toBeGreaterThan(0);

  // Every desired document the broker carries, as the broker's admin sees them.
  const observer = await mqtt.connectAsync(mosquitto.url, {
    clientId: `observer-${name}`,
    username: mosquitto.admin.username,
    password: mosquitto.admin.password,
    reconnectPeriod: 200,
  });
  cleanup.push(() => observer.endAsync(true));
  const documents = new Map<string, Map<number, Set<string>>>();
  observer.on('message', (topic, payload) => {
    if (payload.length === 0) return;
    const deviceId = topic.split('/')[3] as string;
    const sequence = (JSON.parse(payload.toString()) as { payload: { sequence: number } }).payload.sequence;
    const bySequence = documents.get(deviceId) ?? new Map<number, Set<string>>();
    bySequence.set(sequence, (bySequence.get(sequence) ?? new Set()).add(createHash('sha256').update(payload).digest('hex')));
    documents.set(deviceId, bySequence);
  });
  await observer.subscribeAsync('edgefleet/v1/devices/+/desired', { qos: 1 });

  const simulation = await startSimulation({
    serverUrl: balancer.url,
    mqttUrl: mosquitto.url,
    keySet,
    devices,
    telemetry: { windowMs: 1000, runs: 4 },
    connectConcurrency: 50,
  });
  cleanup.push(() => simulation.stop());

  return {
    api,
    mosquitto,
    databaseUrl,
    replicas,
    simulation,
    documents,
    rollout: (stages) => api('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { tags: [name] }, stages }),
    async ended(id, timeoutMs = 90_000) {
      let view: { state: string; reason?: unknown; stages?: unknown } = { state: 'running' };
      await until(
        async () => {
          view = await api('GET', `/v1/rollouts/${id}`);
          return view.state !== 'running';
        },
        'the rollout to end',
        timeoutMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: ${JSON.stringify(view.stages)}`);
      });
      return view;
    },
  };
}

/** Every device runs 1.0.0, installed once, and was never sent two documents under one sequence number. */
async function expectConverged(fleet: ScaledFleet): Promise<void> {
  await until(() => fleet.simulation.countActive('mlp', '1.0.0') === DEVICES, 'every device running 1.0.0', 30_000);
  expect(fleet.simulation.devices.filter((d) => d.installs !== 1).map((d) => `${d.id}: ${d.installs}`)).toEqual([]);
  const clashes = [...fleet.documents].flatMap(([deviceId, bySequence]) =>
    [...bySequence].filter(([, bodies]) => bodies.size > 1).map(([sequence]) => `${deviceId}#${sequence}`),
  );
  expect(clashes).toEqual([]);
  expect(fleet.documents.size).toBe(DEVICES);
}

/** No telemetry window stored twice; none the server acknowledged missing; none stored that was never sent. */
async function expectTelemetryExactlyOnce(fleet: ScaledFleet): Promise<void> {
  const { simulation, api } = fleet;
  await until(
    () => simulation.devices.every((d) => d.telemetryAcked >= d.telemetrySent - 2 && d.telemetryAcked > 0),
    'telemetry acknowledged',
    60_000,
  );
  const acked = new Map(simulation.devices.map((d) => [d.id, d.telemetryAcked]));
  await simulation.stop();
  // (stopping closes and sends each device's last window)
  const sent = simulation.devices.reduce((sum, d) => sum + d.telemetrySent, 0);
  const stored = await listAll<{ deviceId: string; bootId: string; seq: number }>(api, '/v1/telemetry/windows?model=mlp', 'windows');
  const keys = stored.map((w) => `${w.deviceId}/${w.bootId}/${w.seq}`);
  expect(new Set(keys).size).toBe(keys.length);
  const perDevice = new Map<string, number>();
  for (const w of stored) perDevice.set(w.deviceId, (perDevice.get(w.deviceId) ?? 0) + 1);
  const short = [...acked].filter(([id, count]) => (perDevice.get(id) ?? 0) < count).map(([id]) => id);
  expect(short).toEqual([]);
  expect(stored.length).toBeLessThanOrEqual(sent);
}

describe.skipIf(skip)('two replicas on PostgreSQL and Mosquitto', () => {
  it('finishes a staged rollout after the replica driving it is killed -9 mid-stage, with no document or window twice', async () => {
    const fleet = await startScaledFleet('replicas');
    const { api, simulation, replicas } = fleet;
    const rollout = await fleet.rollout([{ percent: 10, soakSeconds: 1 }, { percent: 50, soakSeconds: 3 }, { percent: 100 }]);
    await until(async () => (await api('GET', `/v1/rollouts/${rollout.id}`)).currentStage === 1, 'the second stage open', 60_000).catch(
      async (error) => {
        const view = await api('GET', `/v1/rollouts/${rollout.id}`);
        throw new Error(`${(error as Error).message}: ${JSON.stringify(view.stages)}`);
      },
    );
    // The replica driving the rollout is the holder of its lease.
    const client = new pg.Client({ connectionString: fleet.databaseUrl });
    await client.connect();
    cleanup.push(() => client.end());
    const holder = async () =>
      ((await client.query('select holder from leases where name = $1', [`rollout:${rollout.id}`])).rows[0] as { holder: string }).holder;
    const driverPid = Number((await holder()).split('-').at(-2));
    const driver = replicas.findIndex((r) => r.pid === driverPid);
    expect(driver).toBeGreaterThanOrEqual(0);
    expect(simulation.countActive('mlp', '1.0.0')).toBeLessThan(DEVICES);
    const killed = replicas[driver] as ChildProcess;
    killed.kill('SIGKILL');
    await new Promise((resolve) => killed.once('exit', resolve));
    const killedAt = Date.now();
    const survivor = replicas[1 - driver] as ChildProcess;
    // Within seconds: the lease's 10 s at most, and a tick.
    await until(async () => Number((await holder()).split('-').at(-2)) === survivor.pid, 'the survivor to take the lease', 20_000);
    console.info(`replicas: the survivor took the rollout over ${Date.now() - killedAt} ms after the kill`);

    // The survivor takes the lease over (within its 10 s) and finishes.
    const final = await fleet.ended(rollout.id);
    expect(final.state, JSON.stringify({ reason: final.reason, stages: final.stages })).toBe('completed');
    expect(Number((await holder()).split('-').at(-2))).toBe(survivor.pid);
    await expectConverged(fleet);
    await expectTelemetryExactlyOnce(fleet);
  }, 240_000);

  it('converges when Mosquitto is killed -9 and restarted mid-rollout (retained documents lost with it), installing nothing twice', async () => {
    const fleet = await startScaledFleet('restart');
    const { api, simulation, mosquitto } = fleet;
    const rollout = await fleet.rollout([{ percent: 10, soakSeconds: 1 }, { percent: 50, soakSeconds: 2 }, { percent: 100 }]);
    await until(async () => (await api('GET', `/v1/rollouts/${rollout.id}`)).currentStage === 1, 'the second stage open', 60_000);
    expect(simulation.countActive('mlp', '1.0.0')).toBeLessThan(DEVICES);
    // No persistence: the broker comes back without retained messages or sessions; the replicas
    // publish every desired document again when they reconnect, the devices subscribe again.
    await mosquitto.kill();
    await mosquitto.restart();
    const final = await fleet.ended(rollout.id);
    expect(final.state, JSON.stringify({ reason: final.reason, stages: final.stages })).toBe('completed');
    await expectConverged(fleet);
    await expectTelemetryExactlyOnce(fleet);
  }, 240_000);
});
