/**
 * Rollout benchmark (`pnpm bench:rollout [N...]`, default 1000 10000): time from POST /v1/rollouts
 * (one 100% stage, a 279-byte model) until every simulated device reports it active, with the
 * server's memory; against, in the same run, the floor set by the broker itself: a raw aedes
 * fan-out of signed documents of the same size to the same number of plain mqtt.js clients, each
 * answering once. The server runs in its own process; the simulated devices in one process per
 * core (BENCH_DEVICE_PROCESSES to choose), each a share of them.
 *
 * BENCH_TRACE=1 prints progress and the server's output; BENCH_PROF=1 writes CPU profiles (the
 * server's into /tmp/prof, the device processes' into /tmp/prof-devices).
 */

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { writeBenchmarkSection } from './benchmarks-doc.ts';
import { startBenchFleet, startDeviceProcesses } from './device-processes.ts';

const _TOKEN = 'bench-admin-token-0123456789abcdefghijklm';

/** CPU seconds (user + system) a process has used. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
}

interface Result {
  devices: number;
  enrollSeconds: number;
  rolloutSeconds: number;
  /** CPU time during the rollout, per device, in ms: the server's and the simulated devices'. */
  serverCpuMsPerDevice: number;
  devicesCpuMsPerDevice: number;
  serverRssMiB: number;
  serverPeakMiB: number;
  rawFanoutSeconds: number;
  rawBrokerMiB: number;
  documentBytes: number;
}

async function measure(n: number): Promise<Result> {
  const { url, mqttUrl, api, server, keySet, devices, enrollSeconds } = await startBenchFleet(
    'rollout',
    n,
    process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : [],
  );
  let started: number;
  const devicesUrl = { serverUrl: url, mqttUrl, keySet };
  const simulation = await startDeviceProcesses(devicesUrl, devices, Number(process.env.BENCH_DEVICE_PROCESSES ?? cpus().length));
  started = Date.now();
  const devicesCpuSeconds = async () => (await Promise.all(simulation.pids.map(cpuSeconds))).reduce((a, b) => a + b, 0);
  const cpuBefore = { server: server.pid ? await cpuSeconds(server.pid) : 0, devices: await devicesCpuSeconds() };
  const post = api('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { tags: ['bench'] }, stages: [{ percent: 100 }] });
  if (process.env.BENCH_TRACE) void post.then(() => process.stderr.write(`${Date.now() - started} ms: POST answered\n`));
  await post;
  let peak = 0;
  const trace = process.env.BENCH_TRACE
    ? setInterval(() => process.stderr.write(`${Date.now() - started} ms: ${simulation.countActive()}\n`), 200)
    : undefined;
  while (simulation.countActive() < n) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (server.pid) peak = Math.max(peak, await rssMiB(server.pid, 'VmRSS'));
    if (Date.now() - started > 15 * 60_000) throw new Error(`only ${simulation.countActive()} of ${n} active after 15 minutes`);
  }
  const rolloutSeconds = (Date.now() - started) / 1000;
  const serverCpuMsPerDevice = ((server.pid ? await cpuSeconds(server.pid) : 0) - cpuBefore.server) * (1000 / n);
  const devicesCpuMsPerDevice = ((await devicesCpuSeconds()) - cpuBefore.devices) * (1000 / n);
  clearInterval(trace);
  const serverPeakMiB = server.pid ? await rssMiB(server.pid, 'VmHWM') : peak;
  const desired = await api('GET', `/v1/devices/${devices[0]?.id}/desired`);
  const documentBytes = JSON.stringify(desired).length;
  if (process.env.BENCH_TRACE) process.stderr.write('stopping the simulation…\n');
  await simulation.stop();
  server.kill('SIGTERM');
  await new Promise((resolve) => server.once('exit', resolve));
  if (process.env.BENCH_TRACE) process.stderr.write('raw fan-out…\n');
  const raw = await rawFanout(n, documentBytes);
  return {
    devices: n,
    enrollSeconds,
    rolloutSeconds,
    serverCpuMsPerDevice,
    devicesCpuMsPerDevice,
    serverRssMiB: peak,
    serverPeakMiB,
    rawFanoutSeconds: raw.seconds,
    rawBrokerMiB: raw.rssMiB,
    documentBytes,
  };
}

/** A plain client; a connection reset under the connect storm is retried, as a real device would. */
async function connectRaw(url: string, clientId: string): Promise<mqtt.MqttClient> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await mqtt.connectAsync(url, { clientId, reconnectPeriod: 0 });
    } catch (error) {
      if (attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

/**
 * The floor: a bare aedes broker (bench/raw-broker.ts, in its own process as the server is) fanning
 * documents of the same size out to N plain mqtt.js clients in this process, each answering once.
 */
async function rawFanout(n: number, documentBytes: number): Promise<{ seconds: number; rssMiB: number }> {
  const child = spawn(
    process.execPath,
    ['--conditions=@edgefleet/source', '--import', 'tsx', fileURLToPath(new URL('raw-broker.ts', import.meta.url))],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => JSON.parse(((await lines.next()).value as string | undefined) ?? 'null') as Record<string, number>;
  const { port } = await next();
  const clients: mqtt.MqttClient[] = [];
  const queue = Array.from({ length: n }, (_, i) => i);
  await Promise.all(
    Array.from({ length: 200 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const client = await connectRaw(`mqtt://127.0.0.1:${port}`, `raw-${i}`);
        await client.subscribeAsync(`raw/${i}/desired`, { qos: 1 });
        client.on('message', () => client.publish(`raw/${i}/reported`, 'ok', { qos: 1 }));
        clients.push(client);
      }
    }),
  );
  child.stdin.write(`go ${n} ${documentBytes}\n`);
  const result = await next();
  await Promise.all(clients.map((c) => c.endAsync(true)));
  child.kill('SIGTERM');
  return { seconds: result.seconds as number, rssMiB: result.rssMiB as number };
}

const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0);
const results: Result[] = [];
const started = Date.now();
for (const n of sizes.length > 0 ? sizes : [1000, 10000]) {
  process.stderr.write(`${n} devices…\n`);
  results.push(await measure(n));
  process.stderr.write(`${JSON.stringify(results.at(-1))}\n`);
}
const section = [
  '<!-- bench:rollout:start -->',
  '## Rollout to simulated devices',
  '',
  `Command: \`pnpm bench:rollout\` (bench/rollout.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; took ${Math.round((Date.now() - started) / 1000)} s.`,
  '',
  'One 100% stage of a 279-byte model. The server (fleet-server, embedded aedes, SQLite) runs in its own process; the simulated devices (real agents from @edgefleet/agent over a stand-in runtime, in one process per core: real MQTT connections, ed25519 verification of their desired state, the signature of each signed manifest checked once per process, HTTP download and sha256 of the artifact, three messages back) run on the same cores. The raw fan-out is a bare aedes in its own process publishing documents of the same size to the same number of plain mqtt.js clients, each answering once: the floor set by the broker. CPU per device is the CPU time each process used during the rollout divided by the number of devices: their sum times N, over 2 cores, is a floor for the rollout time on this machine.',
  '',
  '| devices | rollout: POST → all active | raw aedes fan-out | ratio | CPU per device: server / simulated devices | server RSS (peak) | raw broker RSS | desired-state document | enrollment (not timed) |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...results.map(
    (r) =>
      `| ${r.devices} | ${r.rolloutSeconds.toFixed(2)} s | ${r.rawFanoutSeconds.toFixed(2)} s | ${(r.rolloutSeconds / r.rawFanoutSeconds).toFixed(1)}x | ${r.serverCpuMsPerDevice.toFixed(2)} ms / ${r.devicesCpuMsPerDevice.toFixed(2)} ms | ${r.serverPeakMiB.toFixed(0)} MiB | ${r.rawBrokerMiB.toFixed(0)} MiB | ${r.documentBytes} bytes | ${r.enrollSeconds.toFixed(1)} s |`,
  ),
  '',
  'Anchor: AWS IoT Jobs notifies 1,000 devices a minute. Target: 10,000 devices active in under 10 s, within 10x of the raw fan-out.',
  '<!-- bench:rollout:end -->',
].join('\n');
await writeBenchmarkSection('rollout', section);
process.stdout.write(`${section}\n`);
process.exit(0);
