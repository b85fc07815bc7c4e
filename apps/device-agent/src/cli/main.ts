/**
 * edgefleet-agent <command>
 *   run        the device daemon (runtime + agent) from a data folder
 *   simulate   N simulated devices speaking real MQTT, for tests and load
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { KeySetPayload, SignedDocument } from '@edgefleet/protocol';
import { type Logger, pino } from 'pino';
import { runDaemon } from '../daemon/index.ts';
import { deviceShare, enrollDevices, type SimulatedTelemetry, startSimulation } from '../simulate/index.ts';
import { CONFIG_KEYS, ConfigError, DEFAULT_CONFIG_FILE, loadAgentConfig } from './config.ts';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const HELP = `edgefleet-agent ${version}: an edgefleet device (run) or a fleet of simulated devices (simulate).

Usage:
  edgefleet-agent run [--config FILE] [--server URL] [--data-dir DIR] [--id ID] [--mqtt URL]
                      [--token-file FILE] [--log-level LEVEL]
  edgefleet-agent simulate --server URL --token TOKEN --devices N [options]
  edgefleet-agent --version | --help

run: enrolls on first start (the credential is kept in DIR/credential.json, mode 0600), then keeps
the device's models in DIR/models and follows the desired state the server publishes. A server that
cannot be reached yet is retried with backoff; a refused token stops it (exit 1), a bad setting too
(exit 2). Stops cleanly on SIGTERM or SIGINT.
  --config FILE         JSON settings (default ${DEFAULT_CONFIG_FILE} when it exists; or EDGEFLEET_AGENT_CONFIG):
                        ${Object.keys(CONFIG_KEYS).join(', ')}
  --server URL          the fleet server's HTTP API, e.g. http://127.0.0.1:8080 (or EDGEFLEET_SERVER_URL)
  --data-dir DIR        where the device keeps its state (or EDGEFLEET_DATA_DIR; default $STATE_DIRECTORY
                        under systemd, else ./.edgefleet/device)
  --id ID               the device id to enroll as (default: one the server picks)
  --mqtt URL            override the broker URL the server announced at enrollment
  --token-file FILE     a file holding the enrollment token (first start only). Or EDGEFLEET_ENROLLMENT_TOKEN,
                        or systemd's LoadCredential=enrollment-token. Never on the command line: ps shows it.
  --log-level LEVEL     fatal, error, warn, info (default), debug, trace or silent (or EDGEFLEET_LOG_LEVEL)

simulate: N lightweight devices in this process, each with its own credential and MQTT connection,
verifying signed desired state and downloading + hash-checking real artifacts; inference is not run,
its latency is simulated (1-3 ms p95 per device, or --slowdown times that for --slow-version).
A load and test tool: its token may be given as --token.
  --server URL          the fleet server's HTTP API (required)
  --token TOKEN         an enrollment token with enough uses for N devices (or EDGEFLEET_ENROLLMENT_TOKEN)
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

Logs are JSON lines on standard output (pino's format, the fleet server's too).
`;

/** Exit statuses: 1 for a failure a restart may fix, 2 for a setting that must be changed first. */
const EXIT_CONFIG = 2;

/**
 * Standard output, written synchronously: pino's default asynchronous destination flushes at exit
 * with a loop that never ends once the log's reader is gone (EPIPE), and the agent would then
 * never stop on SIGTERM. Synchronous, nothing is left to flush, and a broken pipe mutes the log.
 */
const stdout = pino.destination({ dest: 1, sync: true });
let logger: Logger = pino({ level: 'info' }, stdout);
/** The simulator's lines ({ level, msg, ...fields }) through the same logger. */
const log = (line: Record<string, unknown>) => {
  const { level, msg, ...fields } = line;
  const method = level === 'warn' || level === 'error' || level === 'debug' ? level : 'info';
  logger[method](fields, String(msg));
};

function fraction(name: string, value: string | undefined): number {
  const n = Number(value ?? 0);
  if (!(n >= 0 && n <= 1)) throw new Error(`--${name} must be between 0 and 1`);
  return n;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === '--help' || command === '-h' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(HELP);
    return;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${version}\n`);
    return;
  }
  let values: ReturnType<typeof parse>['values'];
  try {
    values = parse(rest).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message} (see --help)`);
  }

  if (command === 'run') {
    if (values.token !== undefined) {
      throw new ConfigError(
        '--token is not accepted by run: a token on the command line is visible to every user in ps. Put it in a file (--token-file FILE, or "tokenFile" in the config) or in EDGEFLEET_ENROLLMENT_TOKEN',
      );
    }
    const config = loadAgentConfig({ flags: values, env: process.env, cwd: process.cwd() });
    logger = pino({ level: config.logLevel }, stdout);
    logger.info(
      {
        version,
        server: config.server,
        dataDir: config.dataDir,
        ...(config.configFile ? { config: config.configFile } : {}),
        ...(config.tokenSource ? { token: config.tokenSource } : {}),
      },
      'edgefleet-agent starting',
    );
    const shutdown = new AbortController();
    let daemon: { stop(): Promise<void> } | undefined;
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      shutdown.abort(new Error(`stopped by ${signal}`));
      await daemon?.stop();
      logger.info({}, 'stopped');
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
    try {
      daemon = await runDaemon({
        serverUrl: config.server,
        dataDir: config.dataDir,
        ...(config.token ? { token: config.token } : {}),
        ...(config.id ? { id: config.id } : {}),
        ...(config.mqtt ? { mqttUrl: config.mqtt } : {}),
        progressMinBytes: config.progressMinBytes,
        logger,
        signal: shutdown.signal,
      });
    } catch (error) {
      if (stopping) return;
      throw error;
    }
    return;
  }

  const serverUrl = values.server?.replace(/\/$/, '');
  if (!serverUrl) throw new ConfigError('--server is required (see --help)');
  const token = values.token ?? process.env.EDGEFLEET_ENROLLMENT_TOKEN;

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
    if (!token || !Number.isInteger(count) || count < 1) throw new ConfigError('simulate needs --token and --devices N (see --help)');
    const keySet = ((await (await fetch(`${serverUrl}/v1/keyset`)).json()) as SignedDocument<KeySetPayload>).payload;
    const started = Date.now();
    const { devices, mqtt } = await enrollDevices(serverUrl, token, count, values.prefix ?? 'sim');
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
  throw new ConfigError(`unknown command "${command}": use run or simulate (see --help)`);
}

function parse(args: string[]) {
  return parseArgs({
    args,
    options: {
      config: { type: 'string' },
      server: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      'data-dir': { type: 'string' },
      id: { type: 'string' },
      mqtt: { type: 'string' },
      'log-level': { type: 'string' },
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
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  // One line a person can act on, on stderr (and in the journal); the code when there is one.
  const code = (error as { code?: unknown }).code;
  process.stderr.write(`edgefleet-agent: ${typeof code === 'string' && code.startsWith('EF_') ? `${code}: ` : ''}${message}\n`);
  process.exit(error instanceof ConfigError ? EXIT_CONFIG : 1);
});
