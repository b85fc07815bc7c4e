/**
 * A real Mosquitto 2 for tests (Debian's `mosquitto`): its own folder, a loopback port of its own,
 * the dynamic-security plugin with an admin client, and kill -9 / restart for fault tests.
 *
 * Mosquitto listens on the port given without a word when IPv4 is taken (it falls back to [::1]),
 * so readiness is read from its log: the IPv4 listen line, then a TCP connection that succeeds.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MOSQUITTO_BIN = '/usr/sbin/mosquitto';
const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

/** Why Mosquitto tests cannot run here, or undefined when they can. */
export function mosquittoMissing(): string | undefined {
  if (!existsSync(MOSQUITTO_BIN)) return `${MOSQUITTO_BIN} is not installed (apt-get install -y mosquitto)`;
  if (!existsSync(DYNSEC_PLUGIN)) return `${DYNSEC_PLUGIN} is not installed (Debian's mosquitto package ships it)`;
  return undefined;
}

export interface Mosquitto {
  readonly url: string;
  readonly port: number;
  readonly admin: { readonly username: string; readonly password: string };
  /** The broker process now (it changes with restart). */
  readonly pid: number;
  /** Its log so far (every message: `log_type all`). */
  log(): string;
  /** SIGKILL: no will is sent for the server, retained messages not persisted are gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port and configuration (after kill or stop). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface MosquittoOptions {
  /** Keep retained messages and sessions across a restart (mosquitto.db); off by default. */
  readonly persistence?: boolean;
  /** message_size_limit in bytes (0: the broker's own). */
  readonly messageSizeLimit?: number;
  /** A bare broker (benchmark floors): anyone may connect, no dynamic security, no log. */
  readonly anonymous?: boolean;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const missing = mosquittoMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), 'edgefleet-mosquitto-'));
  const port = await freePort();
  const admin = { username: 'edgefleet-admin', password: `pw-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}` };
  const dynsecFile = join(dir, 'dynamic-security.json');
  const init = spawnSync('mosquitto_ctrl', ['dynsec', 'init', dynsecFile, admin.username, admin.password], { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`mosquitto_ctrl dynsec init failed: ${init.stderr || init.stdout}`);
  const logFile = join(dir, 'mosquitto.log');
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      ...(options.anonymous
        ? ['allow_anonymous true']
        : ['allow_anonymous false', `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${dynsecFile}`]),
      `persistence ${options.persistence ? 'true' : 'false'}`,
      `persistence_location ${dir}/`,
      options.messageSizeLimit ? `message_size_limit ${options.messageSizeLimit}` : '',
      // The server's client count, every second rather than every ten.
      'sys_interval 1',
      // The server's replicas consume every device's messages: Mosquitto's default per-client
      // queue of 1,000 (then dropped) and 20 in flight starve them in a burst (docs/scaling.md).
      'max_queued_messages 1000000',
      'max_inflight_messages 1000',
      `log_dest file ${logFile}`,
      // Everything for the tests (they read connections and drops from it); what readiness needs for a floor.
      options.anonymous ? 'log_type information' : 'log_type all',
      'log_timestamp_format %Y-%m-%dT%H:%M:%S',
      '',
    ].join('\n'),
  );
  // As root, Mosquitto drops to the `mosquitto` user: the folder must be theirs.
  if (process.getuid?.() === 0) spawnSync('chown', ['-R', 'mosquitto', dir]);

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');

  async function start(): Promise<void> {
    const before = log().length;
    const proc = spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child = proc;
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`mosquitto exited (${proc.exitCode}): ${stderr}${log().slice(before)}`);
      if (log().slice(before).includes(`Opening ipv4 listen socket on port ${port}`) && (await canConnect(port))) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    proc.kill('SIGKILL');
    throw new Error(`mosquitto did not listen on 127.0.0.1:${port} within 10 s: ${stderr}${log().slice(before)}`);
  }

  await start();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    admin,
    get pid() {
      return child?.pid ?? 0;
    },
    log,
    async kill() {
      child?.kill('SIGKILL');
      await exited;
    },
    restart: start,
    async stop() {
      child?.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
