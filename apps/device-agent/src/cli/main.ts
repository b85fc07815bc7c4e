/**
 * edgefleet-agent <command>
 *   run        the device daemon (runtime + agent) from a data folder
 *   simulate   N simulated devices speaking real MQTT, for tests and load
 */
import { parseArgs } from 'node:util';
import type { KeySetPayload, SignedDocument } from '@edgefleet/protocol';
import { runDaemon } from '../daemon/index.ts';
import { deviceShare, enrollDevices, type SimulatedTelemetry, startSimulation } from '../simulate/index.ts';

const HELP = `edgefleet-agent: an edgefleet device (run) or a fleet of simulated devices (simulate).

Usage:
  edgefleet-agent run --server URL [--token TOKEN] [--data-dir DIR] [--id ID] [--mqtt URL]
  edgefleet-agent simulate --server URL --token TOKEN --devices N [options]

run: enrolls with --token on first start (the credential is kept in DIR/credential.json, mode 0600),
then keeps the device's models in DIR/models and follows the desired state the server publishes.
  --server URL          the fleet server's HTTP API, e.g. http://127.0.0.1:8080 (required)
  --token TOKEN         an enrollment token (first start only)
  --data-dir DIR        where the device keeps its state (default ./.edgefleet/device)
  --id ID               the device id to enroll as (default: one the server picks)
  --mqtt URL            override the broker URL the server announced at enrollment

simulate: N lightweight devices in this process, each with its own credential and MQTT connection,
verifying signed desired state and downloading + hash-checking real artifacts; inference is not run,
its latency is simulated (1-3 ms p95 per device, or --slowdown times that for --slow-version).
  --server URL          the fleet server's HTTP API (required)
  --token TOKEN         an enrollment token with enough uses for N devices (required)
  --devices N           how many devices (required)
  --prefix NAME         device id prefix (default sim)
  --fail-acceptance P   share of devices whose acceptance test fails, 0-1 (default 0)
  --latency-ms MS       delay before each install (default 0)
  --slow-version V      a version whose (simulated) inference is slower than the one it replaces
  --slowdown X          how much slower --slow-version runs, as the p95 ratio devices report (default 2)
  --offline P           share of devices that never connect, 0-1 (default 0)
  --drop-download P     share of devices whose first download is cut half-way, 0-1 (default 0)
  --duration S          stop after S seconds (default: run until interrupted)
  --report-every S      print a progress line every S seconds (default 2)
  --telemetry-ms MS     send a telemetry window of simulated runs every MS (default: no telemetry);
                        inputs are N(0, 1) per element, outputs uniform, folded by the real runtime
  --telemetry-runs N    runs per window (default 20)
  --shift X             add X to every value of one input on a share of the devices (drift)
  --shift-share P       which share of devices sees the shift, 0-1 (default 1 with --shift)
  --shift-input NAME    the input that shifts (default the model's first)

Log lines are JSON on standard output.
`;

const log = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`);

function fraction(name: string, value: string | undefined): number {
  const n = Number(value ?? 0);
  if (!(n >= 0 && n <= 1)) throw new Error(`--${name} must be between 0 and 1`);
  return n;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === '--help' || command === '-h' || rest.includes('--help')) {
    process.stdout.write(HELP);
    return;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      server: { type: 'string' },
      token: { type: 'string' },
      'data-dir': { type: 'string' },
      id: { type: 'string' },
      mqtt: { type: 'string' },
      devices: { type: 'string' },
      prefix: { type: 'string' },
      'fail-acceptance': { type: 'string' },
      'latency-ms': { type: 'string' },
      'slow-version': { type: 'string' },
      slowdown: { type: 'string' },
      offline: { type: 'string' },
      'drop-download': { type: 'string' },
      duration: { type: 'string' },
      'report-every': { type: 'string' },
      'telemetry-ms': { type: 'string' },
      'telemetry-runs': { type: 'string' },
      shift: { type: 'string' },
      'shift-share': { type: 'string' },
      'shift-input': { type: 'string' },
    },
    strict: true,
  });
  if (!values.server) throw new Error('--server is required (see --help)');
  const serverUrl = values.server.replace(/\/$/, '');

  if (command === 'run') {
    const daemon = await runDaemon({
      serverUrl,
      dataDir: values['data-dir'] ?? '.edgefleet/device',
      ...(values.token ? { token: values.token } : {}),
      ...(values.id ? { id: values.id } : {}),
      ...(values.mqtt ? { mqttUrl: values.mqtt } : {}),
      log,
    });
    const stop = async () => {
      await daemon.stop();
      process.exit(0);
    };
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
    return;
  }

  /** --telemetry-ms and friends: windows of simulated runs, one input shifted on a share of devices. */
  function simulatedTelemetry(options: typeof values): SimulatedTelemetry {
    const windowMs = Number(options['telemetry-ms']);
    const runs = Number(options['telemetry-runs'] ?? 20);
    if (!(Number.isInteger(windowMs) && windowMs >= 10)) throw new Error('--telemetry-ms must be an integer of at least 10');
    if (!(Number.isInteger(runs) && runs >= 1 && runs <= 100_000)) throw new Error('--telemetry-runs must be an integer from 1 to 100000');
    const shift = Number(options.shift ?? 0);
    if (!Number.isFinite(shift)) throw new Error('--shift must be a number');
    const share = fraction('shift-share', options['shift-share'] ?? (options.shift ? '1' : '0'));
    return {
      windowMs,
      runs,
      ...(options['shift-input'] ? { shiftInput: options['shift-input'] } : {}),
      shift: (id) => (deviceShare(id, 'shift') < share ? shift : 0),
    };
  }

  if (command === 'simulate') {
    const count = Number(values.devices);
    if (!values.token || !Number.isInteger(count) || count < 1) throw new Error('simulate needs --token and --devices N (see --help)');
    const keySet = ((await (await fetch(`${serverUrl}/v1/keyset`)).json()) as SignedDocument<KeySetPayload>).payload;
    const started = Date.now();
    const { devices, mqtt } = await enrollDevices(serverUrl, values.token, count, values.prefix ?? 'sim');
    log({ level: 'info', msg: 'enrolled', devices: devices.length, seconds: (Date.now() - started) / 1000 });
    const mqttUrl = values.mqtt ?? mqtt.tcp;
    const simulation = await startSimulation({
      serverUrl,
      mqttUrl,
      keySet,
      devices,
      faults: {
        failAcceptance: fraction('fail-acceptance', values['fail-acceptance']),
        latencyMs: Number(values['latency-ms'] ?? 0),
        ...(values['slow-version'] ? { slowdown: { version: values['slow-version'], factor: Number(values.slowdown ?? 2) } } : {}),
        offline: fraction('offline', values.offline),
        dropDownload: fraction('drop-download', values['drop-download']),
      },
      ...(values['telemetry-ms'] ? { telemetry: simulatedTelemetry(values) } : {}),
      log,
    });
    const every = Number(values['report-every'] ?? 2) * 1000;
    const report = setInterval(() => {
      const versions: Record<string, number> = {};
      for (const device of simulation.devices)
        for (const [name, version] of device.active) versions[`${name}@${version}`] = (versions[`${name}@${version}`] ?? 0) + 1;
      log({
        level: 'info',
        msg: 'progress',
        online: simulation.devices.filter((d) => d.online).length,
        active: versions,
        ...(values['telemetry-ms']
          ? {
              telemetrySent: simulation.devices.reduce((n, d) => n + d.telemetrySent, 0),
              telemetryAcked: simulation.devices.reduce((n, d) => n + d.telemetryAcked, 0),
            }
          : {}),
      });
    }, every);
    const stop = async () => {
      clearInterval(report);
      await simulation.stop();
      process.exit(0);
    };
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
    if (values.duration) setTimeout(() => void stop(), Number(values.duration) * 1000);
    return;
  }
  throw new Error(`unknown command "${command}" (see --help)`);
}

main().catch((error: unknown) => {
  process.stderr.write(`edgefleet-agent: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
