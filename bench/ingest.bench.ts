/**
 * Telemetry ingest benchmark (`pnpm bench:ingest [devices] [windows per device]`, default 200 × 50):
 * devices (plain mqtt.js clients with their own credentials) publish real telemetry windows —
 * profiles of a model's inputs and outputs built by the runtime's own WindowProfile — and the clock
 * runs until every window is acknowledged (stored and committed, then a telemetry-ack back).
 *
 * Measured in the same run, on the same load:
 * - the floor: a bare broker in its own process (aedes; Mosquitto 2) receiving the same QoS 1
 *   messages from the same number of clients and delivering them to one subscriber;
 * - the fleet server with its embedded broker and SQLite (the default);
 * - the fleet server on Mosquitto 2 (dynamic security) and PostgreSQL, 1 replica and 2 replicas
 *   consuming through shared subscriptions.
 * Each setup runs in rounds, each round its floor then the setup, back to back; the ratio is taken
 * within a round. Each row: the medians of time to the last acknowledgement (delivery, for a
 * floor), windows/s, the ratio to the floor of its broker (with the rounds' range), p99 of publish →
 * acknowledgement per window, CPU of the server processes, their peak RSS, and how busy the machine
 * and the clients were. Then the drift work over what the embedded server stored. Results replace
 * the ingest section of docs/BENCHMARKS.md.
 *
 * Knobs: BENCH_INGEST_ROUNDS (3), BENCH_INGEST_REPLICAS=1|2 (one Mosquitto setup),
 * BENCH_INGEST_EMBEDDED_ONLY / BENCH_INGEST_MOSQUITTO_ONLY, BENCH_PROF (CPU profiles of the servers
 * in /tmp/prof-ingest), BENCH_LOG_LEVEL and BENCH_TRACE (the servers' logs on stderr).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cp, mkdtemp, readFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { enrollDevices } from '@edgefleet/device-agent';
import { createTestPostgresDatabase } from '@edgefleet/fleet-server/testing';
import { createTopicScheme, type TelemetryAck } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import { type Mosquitto, mosquittoMissing, startMosquitto } from '@edgefleet/test-utils/brokers';
import mqtt, { type MqttClient } from 'mqtt';
import { adminApi, freePort, startChildServer } from '../test/helpers/child-server.ts';
import { sampleWindow, windowMessage } from '../test/helpers/telemetry.ts';
import startPostgres from '../test/setup/postgres.ts';
import { writeBenchmarkSection } from './benchmarks-doc.ts';

const [deviceCount = 200, perDevice = 50] = process.argv.slice(2).map(Number);
const RUNS_PER_WINDOW = 60;
const TOKEN = 'bench-admin-token-0123456789abcdefghijklm';
const BOOT = '0c0ffee0-0000-4000-8000-000000000000';
const topics = createTopicScheme();
const total = deviceCount * perDevice;
const closed = sampleWindow(RUNS_PER_WINDOW);
const featureCount = closed.features.length + 1; // + latency
// Drift passes run when this benchmark asks, not on their timer in the middle of the ingest.
process.env.EDGEFLEET_DRIFT_EVALUATE_MS = '3600000';

async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
/** CPU seconds every process on the machine has used so far (user + system, all cores: /proc/stat). */
async function machineCpuSeconds(): Promise<number> {
  const fields = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: all but idle and iowait were busy.
  const busy = fields.reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + v), 0);
  return busy / 100;
}
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}
const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
};

/** One measurement: a setup's time for the whole load. */
interface Round {
  readonly seconds: number;
  readonly p99Ms: number;
  readonly cpuSeconds: number;
  readonly rssMiB: number;
  /** CPU seconds the whole machine used meanwhile (clients, brokers, servers, PostgreSQL). */
  readonly machineCpuSeconds: number;
  /** CPU seconds this process (the clients) used meanwhile. */
  readonly clientCpuSeconds: number;
}

/** A setup's rounds; a fleet setup's ratio to its floor is taken round by round (the floor measured just before it). */
interface Row {
  readonly name: string;
  readonly broker: 'aedes' | 'mosquitto';
  readonly floor: boolean;
  readonly rounds: Round[];
  readonly ratios: number[];
}

interface Load {
  /** One client per device: where to connect and as whom. */
  readonly clients: { url: string; clientId: string; username?: string; password?: string }[];
  readonly publishTopic: (i: number) => string;
  /** Floor: one subscriber gets every message. Fleet: each device gets acknowledgements. */
  readonly floorSubscriber?: { url: string; filter: string };
  readonly ackTopic?: (i: number) => string;
  readonly pids: number[];
}

/** Publishes deviceCount × perDevice windows at QoS 1 and waits until each is acknowledged (or delivered, for a floor). */
async function measure(name: string, load: Load, deviceIds: readonly string[], boot: string): Promise<Round> {
  const clients: MqttClient[] = await Promise.all(
    load.clients.map((c) =>
      mqtt.connectAsync(c.url, {
        clientId: c.clientId,
        ...(c.username ? { username: c.username, password: c.password } : {}),
        reconnectPeriod: 0,
      }),
    ),
  );
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let done = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const seen = (key: string) => {
    const at = sentAt.get(key);
    if (at === undefined) return;
    sentAt.delete(key);
    latencies.push(performance.now() - at);
    if (++done === total) finish();
  };
  let subscriber: MqttClient | undefined;
  if (load.floorSubscriber) {
    subscriber = await mqtt.connectAsync(load.floorSubscriber.url, { clientId: 'floor-subscriber', reconnectPeriod: 0 });
    await subscriber.subscribeAsync(load.floorSubscriber.filter, { qos: 1 });
    subscriber.on('message', (topic, payload) => {
      // The window names its device and sequence: read them as cheaply as a bare consumer would.
      const i = topic.split('/')[1];
      const seq = Number(/"seq":(\d+)/.exec(payload.toString('latin1'))?.[1]);
      seen(`${i}/${seq}`);
    });
  } else {
    await Promise.all(
      clients.map(async (client, i) => {
        await client.subscribeAsync(load.ackTopic?.(i) as string, { qos: 1 });
        client.on('message', (_topic, payload) => {
          for (const seq of (JSON.parse(payload.toString()) as TelemetryAck).seqs) seen(`${i}/${seq}`);
        });
      }),
    );
  }
  const payloads = deviceIds.map((id) => Array.from({ length: perDevice }, (_, seq) => windowMessage(closed, id, boot, seq)));
  const cpuBefore = await Promise.all(load.pids.map(cpuSeconds));
  const machineBefore = await machineCpuSeconds();
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  for (let seq = 0; seq < perDevice; seq++) {
    for (const [i, client] of clients.entries()) {
      sentAt.set(`${i}/${seq}`, performance.now());
      client.publish(load.publishTopic(i), payloads[i]?.[seq] as Buffer, { qos: 1 });
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  // A window that is never acknowledged must not hang the benchmark: say how many were.
  const limit = 120_000;
  const timedOut = await Promise.race([
    finished.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), limit)),
  ]);
  if (timedOut) throw new Error(`${name}: ${done} of ${total} windows acknowledged after ${limit / 1000} s`);
  const seconds = (performance.now() - started) / 1000;
  const clientUsage = process.cpuUsage(clientBefore);
  const machineAfter = await machineCpuSeconds();
  const cpuAfter = await Promise.all(load.pids.map(cpuSeconds));
  const rss = await Promise.all(load.pids.map(peakRssMiB));
  await Promise.all([...clients, ...(subscriber ? [subscriber] : [])].map((c) => c.endAsync(true)));
  return {
    seconds,
    p99Ms: quantile(latencies, 0.99),
    cpuSeconds: cpuAfter.reduce((sum, c, i) => sum + c - (cpuBefore[i] ?? 0), 0),
    rssMiB: rss.reduce((a, b) => a + b, 0),
    machineCpuSeconds: machineAfter - machineBefore,
    clientCpuSeconds: (clientUsage.user + clientUsage.system) / 1e6,
  };
}

const floorIds = Array.from({ length: deviceCount }, (_, i) => `floor-${String(i).padStart(5, '0')}`);

/** A bare aedes in its own process. */
async function aedesFloor(): Promise<Round> {
  const child = spawn(
    process.execPath,
    ['--conditions=@edgefleet/source', '--import', 'tsx', fileURLToPath(new URL('raw-ingest-broker.ts', import.meta.url))],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const { port, pid } = JSON.parse((await createInterface({ input: child.stdout })[Symbol.asyncIterator]().next()).value as string) as {
    port: number;
    pid: number;
  };
  const url = `mqtt://127.0.0.1:${port}`;
  try {
    return await measure(
      'floor: bare aedes',
      {
        clients: floorIds.map((id) => ({ url, clientId: id })),
        publishTopic: (i) => `floor/${i}/telemetry`,
        floorSubscriber: { url, filter: 'floor/+/telemetry' },
        pids: [pid],
      },
      floorIds,
      BOOT,
    );
  } finally {
    child.stdin?.end();
    child.kill('SIGTERM');
  }
}

async function mosquittoFloor(): Promise<Round> {
  const broker = await startMosquitto({ anonymous: true });
  try {
    return await measure(
      'floor: bare Mosquitto 2',
      {
        clients: floorIds.map((id) => ({ url: broker.url, clientId: id })),
        publishTopic: (i) => `floor/${i}/telemetry`,
        floorSubscriber: { url: broker.url, filter: 'floor/+/telemetry' },
        pids: [broker.pid],
      },
      floorIds,
      BOOT,
    );
  } finally {
    await broker.stop();
  }
}

interface Fleet {
  readonly url: string;
  readonly servers: ChildProcess[];
  readonly devices: { id: string; secret: string }[];
  readonly mqttUrl: string;
}

/** Fleet servers (own processes) with mlp@1.0.0 and deviceCount devices enrolled. */
async function startFleet(replicas: number, env: Record<string, string>, mqttUrl?: string): Promise<Fleet> {
  const dirs: string[] = [];
  const servers: ChildProcess[] = [];
  let mqttPort = 0;
  let url = '';
  for (let r = 0; r < replicas; r++) {
    const dataDir = await mkdtemp(join(tmpdir(), `edgefleet-bench-ingest-${r}-`));
    if (r > 0) await cp(join(dirs[0] as string, 'keys'), join(dataDir, 'keys'), { recursive: true });
    dirs.push(dataDir);
    const port = await freePort();
    mqttPort = r === 0 ? await freePort() : mqttPort;
    // BENCH_PROF=1: each server writes a CPU profile to /tmp/prof-ingest when it stops.
    const nodeArgs = process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof-ingest'] : [];
    servers.push(
      await startChildServer({
        dataDir,
        port,
        mqttPort,
        adminToken: TOKEN,
        logLevel: (process.env.BENCH_LOG_LEVEL as 'error') ?? 'error',
        env,
        nodeArgs,
      }),
    );
    if (r === 0) url = `http://127.0.0.1:${port}`;
  }
  const api = adminApi(url, TOKEN);
  const form = new FormData();
  form.append('version', '1.0.0');
  form.append('model', new Blob([mlpModel(7).bytes.slice()]), 'model.onnx');
  await api('POST', '/v1/models/mlp/versions', form);
  const { token } = await api('POST', '/v1/enrollment-tokens', { tags: ['bench'], uses: deviceCount });
  const { devices } = await enrollDevices(url, token, deviceCount, 'ingest', 16);
  return { url, servers, devices, mqttUrl: mqttUrl ?? `mqtt://127.0.0.1:${mqttPort}` };
}

function fleetLoad(fleet: Fleet): Load {
  return {
    clients: fleet.devices.map((d) => ({ url: fleet.mqttUrl, clientId: d.id, username: d.id, password: d.secret })),
    publishTopic: (i) => topics.build('telemetry', fleet.devices[i]?.id as string),
    ackTopic: (i) => topics.build('telemetry-ack', fleet.devices[i]?.id as string),
    pids: fleet.servers.map((s) => s.pid as number),
  };
}

const rows: Row[] = [];
/** Rounds per setup (BENCH_INGEST_ROUNDS, default 3): each a floor, then the fleet, back to back. */
const ROUNDS = Number(process.env.BENCH_INGEST_ROUNDS ?? 3);
/** Each round's windows come from another boot of the same devices: new windows, none a duplicate. */
const bootOf = (round: number) => `${BOOT.slice(0, -4)}${String(round).padStart(4, '0')}`;
function row(name: string, broker: Row['broker'], floor: boolean): Row {
  const existing = rows.find((r) => r.name === name);
  if (existing) return existing;
  const created: Row = { name, broker, floor, rounds: [], ratios: [] };
  rows.push(created);
  return created;
}
/** Rounds of a floor and a fleet setup, alternating: the ratio of each pair is measured under the same conditions. */
async function paired(
  floor: Row,
  fleet: Row,
  measureFloor: () => Promise<Round>,
  measureFleet: (boot: string) => Promise<Round>,
): Promise<void> {
  for (let round = 0; round < ROUNDS; round++) {
    const base = await measureFloor();
    const measured = await measureFleet(bootOf(round));
    floor.rounds.push(base);
    fleet.rounds.push(measured);
    fleet.ratios.push(measured.seconds / base.seconds);
  }
}

/** The drift work over what the embedded server stored (none with BENCH_INGEST_MOSQUITTO_ONLY). */
let drift:
  | { referenceSeconds: number; passSeconds: number; buckets: number; groups: number; windowsScored: number; stored: number }
  | undefined;
// BENCH_INGEST_MOSQUITTO_ONLY=1 (profiling, comparing changes): the Mosquitto rows only.
if (!process.env.BENCH_INGEST_MOSQUITTO_ONLY) {
  const embedded = await startFleet(1, {});
  await paired(row('floor: bare aedes', 'aedes', true), row('fleet server, embedded aedes + SQLite', 'aedes', false), aedesFloor, (boot) =>
    measure(
      'fleet server, embedded aedes + SQLite',
      fleetLoad(embedded),
      embedded.devices.map((d) => d.id),
      boot,
    ),
  );
  // Drift over what was stored: the whole period as the reference, then one scoring pass (every
  // window merged for each group it belongs to: all devices, and the devices tagged "bench").
  const api = adminApi(embedded.url, TOKEN);
  const stored = (await api('GET', '/v1/telemetry/windows?model=mlp&limit=1')) as { windows: unknown[] };
  let mark = performance.now();
  await api('POST', '/v1/models/mlp/versions/1.0.0/reference', { from: closed.start, to: closed.end });
  const referenceSeconds = (performance.now() - mark) / 1000;
  mark = performance.now();
  const pass = (await api('POST', '/v1/drift/evaluate')) as { buckets: number };
  const passSeconds = (performance.now() - mark) / 1000;
  const scored = (await api('GET', '/v1/drift/scores?model=mlp&version=1.0.0')) as { scores: { windows: number }[] };
  const windowsScored = scored.scores.reduce((sum, r) => sum + r.windows, 0);
  drift = {
    referenceSeconds,
    passSeconds,
    buckets: pass.buckets,
    groups: scored.scores.length,
    windowsScored,
    stored: stored.windows.length,
  };
  // Stopped and gone before the next setup (and, with BENCH_PROF, its profile written).
  await Promise.all(
    embedded.servers.map((server) => {
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGTERM');
      return exited;
    }),
  );
}

const skipped: string[] = [];
// BENCH_INGEST_EMBEDDED_ONLY=1 (profiling): the aedes rows only.
if (process.env.BENCH_INGEST_EMBEDDED_ONLY) skipped.push('Mosquitto rows skipped (BENCH_INGEST_EMBEDDED_ONLY).');
else if (mosquittoMissing()) skipped.push(`Mosquitto rows skipped: ${mosquittoMissing()}`);
else {
  const stopPostgres = process.env.EDGEFLEET_TEST_DATABASE_URL ? undefined : await startPostgres();
  try {
    // BENCH_INGEST_REPLICAS=1 (profiling): one of the two.
    for (const replicas of process.env.BENCH_INGEST_REPLICAS ? [Number(process.env.BENCH_INGEST_REPLICAS)] : [1, 2]) {
      const broker: Mosquitto = await startMosquitto();
      const databaseUrl = (await createTestPostgresDatabase('ingest')) as string;
      const fleet = await startFleet(
        replicas,
        {
          EDGEFLEET_DATABASE_URL: databaseUrl,
          EDGEFLEET_BROKER_URL: broker.url,
          EDGEFLEET_BROKER_USERNAME: broker.admin.username,
          EDGEFLEET_BROKER_PASSWORD: broker.admin.password,
        },
        broker.url,
      );
      try {
        const name = `fleet server, Mosquitto 2 + PostgreSQL, ${replicas} replica${replicas > 1 ? 's' : ''}`;
        const load = { ...fleetLoad(fleet), pids: [...fleetLoad(fleet).pids, broker.pid] };
        await paired(row('floor: bare Mosquitto 2', 'mosquitto', true), row(name, 'mosquitto', false), mosquittoFloor, (boot) =>
          measure(
            name,
            load,
            fleet.devices.map((d) => d.id),
            boot,
          ),
        );
      } finally {
        await Promise.all(
          fleet.servers.map((server) => {
            const exited = new Promise((resolve) => server.once('exit', resolve));
            server.kill('SIGTERM');
            return exited;
          }),
        );
        await broker.stop();
      }
    }
  } finally {
    await stopPostgres?.();
  }
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};
/** The median of a row's rounds of one measure. */
const mid = (r: Row, of: (round: Round) => number) => median(r.rounds.map(of));
/** Share of the machine's cores busy during the rounds, and the clients' (this process's) part of it. */
const busy = (r: Row) => {
  const share = (of: (round: Round) => number) => `${Math.round((mid(r, of) / mid(r, (round) => round.seconds) / cpus().length) * 100)}%`;
  return `${share((round) => round.machineCpuSeconds)} (${share((round) => round.clientCpuSeconds)})`;
};
const spread = (values: readonly number[], digits: number) =>
  values.length > 1 ? ` (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})` : '';
const bytes = windowMessage(closed, 'ingest-00000', BOOT, 0).length;
const section = [
  '<!-- bench:ingest:start -->',
  '## Telemetry ingest',
  '',
  `Command: \`pnpm bench:ingest ${deviceCount} ${perDevice}\` (bench/ingest.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}.`,
  '',
  `${deviceCount} devices (plain mqtt.js clients, each with its own credential) publish ${perDevice} windows each at QoS 1; timed until every window is acknowledged, i.e. stored and committed (SQLite synchronous=FULL; PostgreSQL's commit) and a telemetry-ack received. A window is what the runtime builds from ${RUNS_PER_WINDOW} runs of a 4-feature, 3-class model: ${featureCount} profiles, ${bytes.toLocaleString('en-US')} bytes on the wire. The floors are bare brokers in their own processes receiving the same messages from the same number of clients and delivering them to one subscriber, measured in the same run. CPU and peak RSS are the server processes' (with Mosquitto, the broker's too).`,
  '',
  `Each setup ran ${ROUNDS} round${ROUNDS > 1 ? 's' : ''}, each round its broker's floor and then the setup, back to back (this machine's speed drifts from minute to minute: a ratio is taken within a round). Shown: medians over the rounds, × floor with the lowest and highest round in brackets.`,
  '',
  '| setup | time | windows/s | × floor | p99 publish → ack | CPU per window | peak RSS | machine busy (clients) |',
  '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map((r) => {
    const seconds = mid(r, (round) => round.seconds);
    const ratio = r.floor ? '1' : `${median(r.ratios).toFixed(2)}${spread(r.ratios, 2)}`;
    return `| ${r.name} | ${seconds.toFixed(2)} s | ${Math.round(total / seconds).toLocaleString('en-US')} | ${ratio} | ${mid(r, (round) => round.p99Ms).toFixed(0)} ms | ${((mid(r, (round) => round.cpuSeconds) * 1000) / total).toFixed(3)} ms | ${Math.max(...r.rounds.map((round) => round.rssMiB)).toFixed(0)} MiB | ${busy(r)} |`;
  }),
  '',
  ...(skipped.length > 0 ? [skipped.join(' '), ''] : []),
  ...(drift
    ? [
        `Feature values/s with the embedded server: ${Math.round((total * RUNS_PER_WINDOW * featureCount) / (rows[1] ? mid(rows[1], (round) => round.seconds) : 1)).toLocaleString('en-US')} (the runs each window summarizes times its profiles: what a fleet shipping raw inputs would have had to send).${drift.stored === 1 ? '' : ' WARNING: nothing stored.'}`,
        '',
        '| drift work on the stored windows (embedded server) | time | rate |',
        '| --- | --- | --- |',
        `| reference from the whole period (\`POST …/reference\`) | ${drift.referenceSeconds.toFixed(2)} s | ${Math.round((total * ROUNDS) / drift.referenceSeconds).toLocaleString('en-US')} windows merged/s (${(total * ROUNDS).toLocaleString('en-US')} windows) |`,
        `| one scoring pass (\`POST /v1/drift/evaluate\`: ${drift.buckets} bucket, ${drift.groups} groups) | ${drift.passSeconds.toFixed(2)} s | ${Math.round(drift.windowsScored / drift.passSeconds).toLocaleString('en-US')} group-windows scored/s |`,
      ]
    : ['Aedes rows and drift work skipped (BENCH_INGEST_MOSQUITTO_ONLY).']),
  '<!-- bench:ingest:end -->',
].join('\n');
await writeBenchmarkSection('ingest', section);
process.stdout.write(`${section}\n`);
process.exit(0);
