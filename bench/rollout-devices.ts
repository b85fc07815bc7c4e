/**
 * One process of the rollout benchmark's simulated devices (bench/rollout.bench.ts starts one per
 * core): a share of the enrolled devices, each a real agent (startSimulation). Talks to its parent
 * in JSON lines: it reads its options on stdin, answers `{"ready":true}` once every device is
 * connected and subscribed, then reports how many devices run `model@version` whenever that
 * changes; a `stop` line on stdin stops the devices and ends the process.
 */
import { createInterface } from 'node:readline';
import { startSimulation } from '@edgefleet/device-agent';
import type { KeySetPayload } from '@edgefleet/protocol';

interface Options {
  readonly serverUrl: string;
  readonly mqttUrl: string;
  readonly keySet: KeySetPayload;
  readonly devices: { id: string; secret: string }[];
  readonly connectConcurrency: number;
  readonly model: string;
  readonly version: string;
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const options = JSON.parse(((await lines.next()).value as string | undefined) ?? 'null') as Options;
const simulation = await startSimulation({
  serverUrl: options.serverUrl,
  mqttUrl: options.mqttUrl,
  keySet: options.keySet,
  devices: options.devices,
  connectConcurrency: options.connectConcurrency,
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
let reported = -1;
const report = setInterval(() => {
  const active = simulation.countActive(options.model, options.version);
  if (active === reported) return;
  reported = active;
  process.stdout.write(`${JSON.stringify({ active })}\n`);
}, 20);
for (let line = await lines.next(); !line.done; line = await lines.next()) {
  if (line.value.trim() === 'stop') break;
}
clearInterval(report);
await simulation.stop();
process.exit(0);
