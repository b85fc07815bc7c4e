/**
 * Telemetry ingest benchmark (`pnpm bench:ingest [devices] [windows per device]`, default 200 × 50):
 * devices (plain mqtt.js clients with their own credentials) publish real telemetry windows —
 * profiles of a model's inputs and outputs built by the runtime's own WindowProfile — to a fleet
 * server in its own process (embedded aedes, SQLite), and the clock runs until every window is
 * acknowledged (stored and committed). Reported: windows/s and feature values/s (the runs each
 * window summarizes, times its features), with the server's CPU. Results replace the ingest
 * section of docs/BENCHMARKS.md.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrollDevices } from '@edgefleet/device-agent';
import { createTopicScheme, type TelemetryAck } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import mqtt from 'mqtt';
import { adminApi, freePort, startChildServer } from '../test/helpers/child-server.ts';
import { sampleWindow, windowMessage } from '../test/helpers/telemetry.ts';
import { writeBenchmarkSection } from './benchmarks-doc.ts';

const [deviceCount = 200, perDevice = 50] = process.argv.slice(2).map(Number);
const RUNS_PER_WINDOW = 60;
const TOKEN = 'bench-admin-token-0123456789abcdefghijklm';

async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const closed = sampleWindow(RUNS_PER_WINDOW);
const featureCount = closed.features.length + 1; // + latency

const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-bench-ingest-'));
const [port, mqttPort] = [await freePort(), await freePort()];
const url = `http://127.0.0.1:${port}`;
const api = adminApi(url, TOKEN);
// Drift passes run when this benchmark asks, not on their timer in the middle of the ingest.
process.env.EDGEFLEET_DRIFT_EVALUATE_MS = '3600000';
const server = await startChildServer({ dataDir, port, mqttPort, adminToken: TOKEN, logLevel: 'error' });
const form = new FormData();
form.append('version', '1.0.0');
form.append('model', new Blob([mlpModel(7).bytes.slice()]), 'model.onnx');
await api('POST', '/v1/models/mlp/versions', form);
const { token } = await api('POST', '/v1/enrollment-tokens', { tags: ['bench'], uses: deviceCount });
const { devices } = await enrollDevices(url, token, deviceCount, 'ingest', 16);
const topics = createTopicScheme();
const clients = await Promise.all(
  devices.map((d) =>
    mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: d.id, username: d.id, password: d.secret, reconnectPeriod: 0 }),
  ),
);
let acked = 0;
const total = deviceCount * perDevice;
const allAcked = new Promise<void>((resolve) => {
  for (const [i, client] of clients.entries()) {
    client.subscribe(topics.build('telemetry-ack', devices[i]?.id as string), { qos: 1 });
    client.on('message', (_topic, payload) => {
      acked += (JSON.parse(payload.toString()) as TelemetryAck).seqs.length;
      if (acked >= total) resolve();
    });
  }
});
await new Promise((resolve) => setTimeout(resolve, 500));
const payloads = devices.map((d) =>
  Array.from({ length: perDevice }, (_, seq) => windowMessage(closed, d.id, '0c0ffee0-0000-4000-8000-000000000000', seq)),
);
const cpuBefore = server.pid ? await cpuSeconds(server.pid) : 0;
const started = performance.now();
for (let seq = 0; seq < perDevice; seq++) {
  for (const [i, client] of clients.entries())
    client.publish(topics.build('telemetry', devices[i]?.id as string), payloads[i]?.[seq] as Buffer, { qos: 1 });
  await new Promise((resolve) => setImmediate(resolve));
}
await allAcked;
const seconds = (performance.now() - started) / 1000;
const serverCpu = (server.pid ? await cpuSeconds(server.pid) : 0) - cpuBefore;
const stored = (await api('GET', `/v1/telemetry/windows?model=mlp&limit=1`)) as { windows: unknown[] };
// Drift over what was stored: the whole period as the reference, then one scoring pass (every
// window merged for each group it belongs to: all devices, and the devices tagged "bench").
let mark = performance.now();
await api('POST', '/v1/models/mlp/versions/1.0.0/reference', { from: closed.start, to: closed.end });
const referenceSeconds = (performance.now() - mark) / 1000;
mark = performance.now();
const pass = (await api('POST', '/v1/drift/evaluate')) as { buckets: number };
const passSeconds = (performance.now() - mark) / 1000;
const scored = (await api('GET', '/v1/drift/scores?model=mlp&version=1.0.0')) as { scores: { windows: number }[] };
const windowsScored = scored.scores.reduce((sum, row) => sum + row.windows, 0);
await Promise.all(clients.map((c) => c.endAsync(true)));
server.kill('SIGTERM');

const bytes = payloads[0]?.[0]?.length ?? 0;
const section = [
  '<!-- bench:ingest:start -->',
  '## Telemetry ingest',
  '',
  `Command: \`pnpm bench:ingest ${deviceCount} ${perDevice}\` (bench/ingest.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}.`,
  '',
  `${deviceCount} devices (plain mqtt.js clients, each with its own credential) publish ${perDevice} windows each at QoS 1 to the fleet server in its own process (embedded aedes, SQLite, synchronous=FULL); timed until every window is acknowledged, i.e. stored and committed. A window is what the runtime builds from ${RUNS_PER_WINDOW} runs of a 4-feature, 3-class model: ${featureCount} profiles, ${bytes.toLocaleString('en-US')} bytes on the wire.`,
  '',
  '| windows | time to all acknowledged | windows/s | feature values/s | server CPU per window |',
  '| --- | --- | --- | --- | --- |',
  `| ${total.toLocaleString('en-US')} | ${seconds.toFixed(2)} s | ${Math.round(total / seconds).toLocaleString('en-US')} | ${Math.round((total * RUNS_PER_WINDOW * featureCount) / seconds).toLocaleString('en-US')} | ${((serverCpu * 1000) / total).toFixed(2)} ms |`,
  '',
  `Feature values/s counts the values the windows summarize (runs × profiles), which is what a fleet shipping raw inputs would have had to send.${stored.windows.length === 1 ? '' : ' WARNING: nothing stored.'}`,
  '',
  '| drift work on the stored windows | time | rate |',
  '| --- | --- | --- |',
  `| reference from the whole period (\`POST …/reference\`) | ${referenceSeconds.toFixed(2)} s | ${Math.round(total / referenceSeconds).toLocaleString('en-US')} windows merged/s |`,
  `| one scoring pass (\`POST /v1/drift/evaluate\`: ${pass.buckets} bucket, ${scored.scores.length} groups) | ${passSeconds.toFixed(2)} s | ${Math.round(windowsScored / passSeconds).toLocaleString('en-US')} group-windows scored/s |`,
  '<!-- bench:ingest:end -->',
].join('\n');
await writeBenchmarkSection('ingest', section);
process.stdout.write(`${section}\n`);
process.exit(0);
