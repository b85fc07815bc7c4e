/**
 * `edgefleet-server` stopped the way systemd stops it (SIGTERM) while devices are connected,
 * sending telemetry and following a rollout in progress: it exits 0 and logs no warning, no error
 * and no stack trace on the way out ("mqemitter is closed" was printed here before).
 */
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeTensor } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { describe, expect, it } from 'vitest';
import { adminApi, freePort } from './helpers/child-server.ts';
import { until } from './helpers/fleet.ts';

const serverBin = fileURLToPath(new URL('../apps/fleet-server/bin/edgefleet-server.mjs', import.meta.url));
const agentBin = fileURLToPath(new URL('../apps/device-agent/bin/edgefleet-agent.mjs', import.meta.url));
const TOKEN = 'shutdown-admin-token-0123456789abcdefghij';
const DEVICES = 8;

describe('edgefleet-server on SIGTERM', () => {
  it('stops with exit 0 and nothing above info in its log, with devices connected and a rollout running', async () => {
    const port = await freePort();
    const mqttPort = await freePort();
    // The compiled bin with plain node: what an operator runs.
    const server = spawn(process.execPath, [serverBin], {
      env: {
        PATH: process.env.PATH,
        EDGEFLEET_DATA_DIR: await mkdtemp(join(tmpdir(), 'ef-shutdown-')),
        EDGEFLEET_PORT: String(port),
        EDGEFLEET_MQTT_PORT: String(mqttPort),
        EDGEFLEET_ADMIN_TOKEN: TOKEN,
        EDGEFLEET_DRIFT_EVALUATE_MS: '200',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
    let simulator: ReturnType<typeof spawn> | undefined;
    const agents: ReturnType<typeof spawn>[] = [];
    try {
      await until(async () => output.includes('admin API'), 'the server to start');
      const url = `http://127.0.0.1:${port}`;
      const api = adminApi(url, TOKEN);
      const form = new FormData();
      form.append('version', '1.0.0');
      form.append('sampleInputs', JSON.stringify([[encodeTensor('features', 'float32', [1, 4], seededValues(4, 1))]]));
      form.append('model', new Blob([mlpModel(7).bytes.slice()]), 'model.onnx');
      await api('POST', '/v1/models/mlp/versions', form);
      const { token } = await api('POST', '/v1/enrollment-tokens', { uses: DEVICES + 2, tags: ['shutdown'] });
      // Two real device agents (runtime + MQTT with an offline will), as installed on a device.
      for (const id of ['real-1', 'real-2']) {
        const dataDir = await mkdtemp(join(tmpdir(), `ef-shutdown-${id}-`));
        agents.push(
          spawn(process.execPath, [agentBin, 'run', '--server', url, '--id', id, '--data-dir', dataDir], {
            stdio: ['ignore', 'ignore', 'ignore'],
            env: { PATH: process.env.PATH, EDGEFLEET_ENROLLMENT_TOKEN: token },
          }),
        );
      }
      simulator = spawn(
        process.execPath,
        [
          agentBin,
          'simulate',
          '--server',
          url,
          '--token',
          token,
          '--devices',
          String(DEVICES),
          '--telemetry-ms',
          '100',
          '--report-every',
          '3600',
        ],
        { stdio: ['ignore', 'ignore', 'ignore'] },
      );
      await until(
        async () => (await api('GET', '/v1/devices')).devices.filter((d: { online: boolean }) => d.online).length === DEVICES + 2,
        'every device online',
      );
      // A rollout that stays in its first stage (a long soak) while the server stops.
      const rollout = await api('POST', '/v1/rollouts', {
        model: 'mlp',
        version: '1.0.0',
        selector: { tags: ['shutdown'] },
        stages: [{ percent: 50, soakSeconds: 3600 }, { percent: 100 }],
      });
      // Witness that the server is busy when it is stopped: devices installed and sent telemetry.
      await until(async () => (await api('GET', `/v1/rollouts/${rollout.id}`)).state === 'running', 'the rollout running');
      await until(async () => (await api('GET', '/v1/telemetry/windows?limit=1')).windows.length > 0, 'telemetry windows stored');
      server.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      simulator?.kill('SIGKILL');
      for (const agent of agents) agent.kill('SIGKILL');
      if (server.exitCode === null) server.kill('SIGKILL');
    }
    expect(output).toContain('"msg":"shutting down"');
    expect(output).toContain('"msg":"stopped"');
    const lines = output.split('\n').filter((line) => line.startsWith('{'));
    const loud = lines.filter((line) => (JSON.parse(line) as { level: number }).level >= 40);
    expect(loud).toEqual([]);
    expect(output).not.toContain('mqemitter');
    expect(output).not.toMatch(/\n\s+at /);
  }, 90_000);

  it('stops on SIGTERM when whoever read its log went away (a broken stdout pipe)', async () => {
    const port = await freePort();
    const server = spawn(process.execPath, [serverBin], {
      env: {
        PATH: process.env.PATH,
        EDGEFLEET_DATA_DIR: await mkdtemp(join(tmpdir(), 'ef-shutdown-pipe-')),
        EDGEFLEET_PORT: String(port),
        EDGEFLEET_MQTT_PORT: String(await freePort()),
        EDGEFLEET_ADMIN_TOKEN: TOKEN,
      },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const exited = new Promise<string>((resolve) => server.once('exit', (code, signal) => resolve(`code ${code} signal ${signal}`)));
    try {
      let output = '';
      server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await until(async () => output.includes('admin API'), 'the server to start');
      // The reader goes away: the server's next log line ("shutting down") meets a closed pipe.
      server.stdout.destroy();
      server.kill('SIGTERM');
      let code: string | undefined;
      void exited.then((c) => (code = c));
      await until(async () => code !== undefined, 'the server to exit after SIGTERM', 20_000);
      expect(code).toBe('code 0 signal null');
    } finally {
      if (server.exitCode === null) server.kill('SIGKILL');
    }
  }, 60_000);
});
