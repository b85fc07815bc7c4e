/**
 * The benchmarks' fleet: a fleet server in its own process with a small model registered and N
 * enrolled devices; and those devices simulated in child processes (bench/rollout-devices.ts), each
 * a share of them: thousands of agents in one Node thread would make that thread, not the server,
 * the limit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { enrollDevices } from '@edgefleet/device-agent';
import type { KeySetPayload, SignedDocument } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import { adminApi, freePort, startChildServer } from '../test/helpers/child-server.ts';

export const BENCH_TOKEN = 'bench-admin-token-0123456789abcdefghijklm';

export interface BenchFleet {
  readonly url: string;
  readonly mqttUrl: string;
  readonly api: ReturnType<typeof adminApi>;
  readonly server: ChildProcess;
  readonly keySet: KeySetPayload;
  /** Enrolled (tagged `bench`), not connected. */
  readonly devices: { id: string; secret: string }[];
  readonly enrollSeconds: number;
}

/** A server (its own process, SQLite in a temp folder) with mlp@1.0.0 registered and `n` devices enrolled. */
export async function startBenchFleet(name: string, n: number, nodeArgs: readonly string[] = []): Promise<BenchFleet> {
  const dataDir = await mkdtemp(join(tmpdir(), `edgefleet-bench-${name}-`));
  const [port, mqttPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${port}`;
  const api = adminApi(url, BENCH_TOKEN);
  const server = await startChildServer({
    dataDir,
    port,
    mqttPort,
    adminToken: BENCH_TOKEN,
    logLevel: 'error',
    nodeArgs: ['--max-old-space-size=4096', ...nodeArgs],
  });
  const form = new FormData();
  form.append('version', '1.0.0');
  form.append('model', new Blob([mlpModel(7).bytes.slice()]), 'model.onnx');
  await api('POST', '/v1/models/mlp/versions', form);
  const keySet = ((await (await fetch(`${url}/v1/keyset`)).json()) as SignedDocument<KeySetPayload>).payload;
  const { token } = await api('POST', '/v1/enrollment-tokens', { tags: ['bench'], uses: n });
  const started = Date.now();
  const { devices } = await enrollDevices(url, token, n, 'bench', 16);
  return { url, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, api, server, keySet, devices, enrollSeconds: (Date.now() - started) / 1000 };
}

/** Starts `devices` in `processes` processes; resolves once every device is connected and subscribed. */
export async function startDeviceProcesses(
  urls: { serverUrl: string; mqttUrl: string; keySet: KeySetPayload },
  devices: { id: string; secret: string }[],
  processes: number,
): Promise<{ countActive(): number; readonly pids: number[]; stop(): Promise<void> }> {
  const shares = Array.from({ length: Math.max(1, processes) }, (_, k) => devices.filter((_, i) => i % Math.max(1, processes) === k));
  const children = shares
    .filter((share) => share.length > 0)
    .map((share) => {
      const child = spawn(
        process.execPath,
        [
          '--max-old-space-size=4096',
          ...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof-devices'] : []),
          '--conditions=@edgefleet/source',
          '--import',
          'tsx',
          fileURLToPath(new URL('rollout-devices.ts', import.meta.url)),
        ],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      const state = { child, active: 0 };
      const ready = new Promise<void>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          const message = JSON.parse(line) as { ready?: boolean; active?: number };
          if (message.ready) resolve();
          if (typeof message.active === 'number') state.active = message.active;
        });
        child.once('exit', (code) => reject(new Error(`a device process exited (${code}) before its devices were ready`)));
      });
      child.stdin.write(`${JSON.stringify({ ...urls, devices: share, connectConcurrency: 100, model: 'mlp', version: '1.0.0' })}\n`);
      return { state, ready };
    });
  await Promise.all(children.map((c) => c.ready));
  return {
    countActive: () => children.reduce((sum, c) => sum + c.state.active, 0),
    pids: children.map((c) => c.state.child.pid as number),
    async stop() {
      await Promise.all(
        children.map(({ state: { child } }) => {
          if (child.exitCode !== null) return Promise.resolve();
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.stdin.write('stop\n');
          return exited;
        }),
      );
    },
  };
}
