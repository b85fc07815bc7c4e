/**
 * Rollout benchmark, scaled out (`pnpm bench:rollout-scaled [N]`, default 10000): two fleet server
 * replicas (own processes) on PostgreSQL behind a load balancer, devices on Mosquitto 2 with
 * dynamic security, the simulated devices (real agents) in one process per core. Timed: enrolling
 * N devices (each registered with Mosquitto), and a rollout from POST until every device reports
 * the version active; with the replicas' and the broker's CPU. Floor in the same run: a bare
 * Mosquitto fanning retained documents of the same size out to N plain clients, each answering
 * once. Results replace the rollout-scaled section of docs/BENCHMARKS.md.
 */
import { cp, mkdtemp, readFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrollDevices } from '@edgefleet/device-agent';
import { createTestPostgresDatabase } from '@edgefleet/fleet-server/testing';
import type { KeySetPayload, SignedDocument } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import { startMosquitto } from '@edgefleet/test-utils/brokers';
import mqtt from 'mqtt';
import { adminApi, freePort, startChildServer } from '../test/helpers/child-server.ts';
import { startLoadBalancer } from '../test/helpers/load-balancer.ts';
import startPostgres from '../test/setup/postgres.ts';
import { writeBenchmarkSection } from './benchmarks-doc.ts';
import { startDeviceProcesses } from './device-processes.ts';

const n = Number(process.argv[2] ?? 10_000);
const TOKEN = 'bench-admin-token-0123456789abcdefghijklm';
const trace = (message: string) => process.env.BENCH_TRACE && process.stderr.write(`${message}\n`);

async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
async function peakRssMiB(pid: number): Promise<number> {
  return Number(/VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

const started = Date.now();
const stopPostgres = process.env.EDGEFLEET_TEST_DATABASE_URL ? undefined : await startPostgres();
const databaseUrl = (await createTestPostgresDatabase('rollout')) as string;
const broker = await startMosquitto();
const env = {
  EDGEFLEET_DATABASE_URL: databaseUrl,
  EDGEFLEET_BROKER_URL: broker.url,
  EDGEFLEET_BROKER_USERNAME: broker.admin.username,
  EDGEFLEET_BROKER_PASSWORD: broker.admin.password,
};
const dirs = [await mkdtemp(join(tmpdir(), 'edgefleet-bench-scaled-a-')), await mkdtemp(join(tmpdir(), 'edgefleet-bench-scaled-b-'))];
const ports = [await freePort(), await freePort()];
const nodeArgs = ['--max-old-space-size=4096'];
const first = await startChildServer({
  dataDir: dirs[0] as string,
  port: ports[0] as number,
  mqttPort: 0,
  adminToken: TOKEN,
  logLevel: 'error',
  env,
  nodeArgs,
});
await cp(join(dirs[0] as string, 'keys'), join(dirs[1] as string, 'keys'), { recursive: true });
const second = await startChildServer({
  dataDir: dirs[1] as string,
  port: ports[1] as number,
  mqttPort: 0,
  adminToken: TOKEN,
  logLevel: 'error',
  env,
  nodeArgs,
});
const replicas = [first, second];
const balancer = await startLoadBalancer(ports as number[]);
const api = adminApi(balancer.url, TOKEN);
const form = new FormData();
form.append('version', '1.0.0');
form.append('model', new Blob([mlpModel(7).bytes.slice()]), 'model.onnx');
await api('POST', '/v1/models/mlp/versions', form);
const keySet = ((await (await fetch(`${balancer.url}/v1/keyset`)).json()) as SignedDocument<KeySetPayload>).payload;
const { token } = await api('POST', '/v1/enrollment-tokens', { tags: ['bench'], uses: n });
trace(`enrolling ${n}…`);
let mark = Date.now();
const { devices } = await enrollDevices(balancer.url, token, n, 'scaled', 16);
const enrollSeconds = (Date.now() - mark) / 1000;
trace(`enrolled in ${enrollSeconds} s; connecting…`);
const simulation = await startDeviceProcesses({ serverUrl: balancer.url, mqttUrl: broker.url, keySet }, devices, cpus().length);
const pids = [...replicas.map((r) => r.pid as number), broker.pid];
const cpuBefore = await Promise.all(pids.map(cpuSeconds));
mark = Date.now();
await api('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { tags: ['bench'] }, stages: [{ percent: 100 }] });
while (simulation.countActive() < n) {
  await new Promise((resolve) => setTimeout(resolve, 50));
  if (Date.now() - mark > 15 * 60_000) throw new Error(`only ${simulation.countActive()} of ${n} active after 15 minutes`);
}
const rolloutSeconds = (Date.now() - mark) / 1000;
const cpuAfter = await Promise.all(pids.map(cpuSeconds));
const cpuMs = (i: number) => (((cpuAfter[i] ?? 0) - (cpuBefore[i] ?? 0)) * 1000) / n;
const peaks = await Promise.all(pids.map(peakRssMiB));
const documentBytes = JSON.stringify(await api('GET', `/v1/devices/${devices[0]?.id}/desired`)).length;
trace(`rollout in ${rolloutSeconds} s; stopping…`);
await simulation.stop();
for (const replica of replicas) replica.kill('SIGTERM');
await balancer.close();
await broker.stop();

// The floor: a bare Mosquitto, documents of the same size retained to N plain clients answering once.
trace('floor…');
const bare = await startMosquitto({ anonymous: true });
const clients: mqtt.MqttClient[] = [];
const queue = Array.from({ length: n }, (_, i) => i);
let answered = 0;
let allAnswered: () => void = () => undefined;
const done = new Promise<void>((resolve) => {
  allAnswered = resolve;
});
await Promise.all(
  Array.from({ length: 200 }, async () => {
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
      const client = await mqtt.connectAsync(bare.url, { clientId: `raw-${i}`, reconnectPeriod: 0 });
      await client.subscribeAsync(`raw/${i}/desired`, { qos: 1 });
      client.on('message', () => client.publish(`raw/${i}/reported`, 'ok', { qos: 1 }));
      clients.push(client);
    }
  }),
);
const collector = await mqtt.connectAsync(bare.url, { clientId: 'raw-collector', reconnectPeriod: 0 });
await collector.subscribeAsync('raw/+/reported', { qos: 1 });
collector.on('message', () => {
  if (++answered === n) allAnswered();
});
const payload = Buffer.alloc(documentBytes, 'x');
const floorCpuBefore = await cpuSeconds(bare.pid);
mark = Date.now();
for (let i = 0; i < n; i++) {
  collector.publish(`raw/${i}/desired`, payload, { qos: 1, retain: true });
  if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
}
await done;
const floorSeconds = (Date.now() - mark) / 1000;
const floorCpuMs = ((await cpuSeconds(bare.pid)) - floorCpuBefore) * (1000 / n);
await Promise.all([...clients, collector].map((c) => c.endAsync(true)));
await bare.stop();
await stopPostgres?.();

const section = [
  '<!-- bench:rollout-scaled:start -->',
  '## Rollout through Mosquitto, two replicas',
  '',
  `Command: \`pnpm bench:rollout-scaled ${n}\` (bench/rollout-scaled.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; took ${Math.round((Date.now() - started) / 1000)} s.`,
  '',
  `Two fleet server replicas (own processes) on PostgreSQL (the tests' private cluster, fsync off) behind a TCP load balancer; devices on Mosquitto 2.0.11 with dynamic security (each enrolled device registered by the server: a client and a role); ${n.toLocaleString('en-US')} simulated devices (real agents) in ${cpus().length} processes; one 100% stage of a 279-byte model. Everything shares the same ${cpus().length} cores. The floor is a bare Mosquitto in the same run fanning ${documentBytes}-byte retained documents out to ${n.toLocaleString('en-US')} plain clients, each answering once.`,
  '',
  '| devices | enrollment (Mosquitto registration included) | rollout: POST → all active | bare Mosquitto fan-out | ratio | CPU per device: replica A / replica B / Mosquitto | peak RSS: A / B / Mosquitto |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  `| ${n.toLocaleString('en-US')} | ${enrollSeconds.toFixed(1)} s | ${rolloutSeconds.toFixed(2)} s | ${floorSeconds.toFixed(2)} s (${floorCpuMs.toFixed(3)} ms CPU per device) | ${(rolloutSeconds / floorSeconds).toFixed(1)}x | ${cpuMs(0).toFixed(2)} / ${cpuMs(1).toFixed(2)} / ${cpuMs(2).toFixed(2)} ms | ${peaks.map((p) => p.toFixed(0)).join(' / ')} MiB |`,
  '<!-- bench:rollout-scaled:end -->',
].join('\n');
await writeBenchmarkSection('rollout-scaled', section);
process.stdout.write(`${section}\n`);
process.exit(0);
