/**
 * Simulated devices for the benchmarks, in child processes (bench/rollout-devices.ts), each a share
 * of them: thousands of agents in one Node thread would make that thread, not the server, the limit.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { KeySetPayload } from '@edgefleet/protocol';

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
