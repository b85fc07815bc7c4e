/**
 * `edgefleet-agent` as a user runs it: `run` enrolls, connects and follows its desired state, and
 * restores its model from disk after a restart without its token; `simulate` enrolls and connects
 * N devices; `--help` documents every flag.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mlpModel } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, startFleet, until } from './helpers/fleet.ts';

const bin = fileURLToPath(new URL('../apps/device-agent/bin/edgefleet-agent.mjs', import.meta.url));
let fleet: Fleet;
const children: ChildProcess[] = [];

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes);
}, 60_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await fleet?.close();
});

function agent(args: string[]): { child: ChildProcess; lines: Record<string, unknown>[] } {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: Record<string, unknown>[] = [];
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
      lines.push(JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>);
      buffer = buffer.slice(newline + 1);
    }
  });
  return { child, lines };
}

describe('edgefleet-agent', () => {
  it('documents every flag in --help', () => {
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' }).stdout;
    for (const flag of [
      '--server',
      '--token',
      '--data-dir',
      '--id',
      '--mqtt',
      '--devices',
      '--prefix',
      '--fail-acceptance',
      '--latency-ms',
      '--offline',
      '--drop-download',
      '--duration',
      '--report-every',
    ]) {
      expect(help).toContain(flag);
    }
  });

  it('run: enrolls once, follows its desired state, and restores its model after a restart without a token', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-agent-cli-'));
    const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['cli'], uses: 1 });
    const first = agent(['run', '--server', fleet.server.url, '--token', token, '--data-dir', dataDir, '--id', 'cli-1']);
    await until(() => first.lines.some((l) => l.msg === 'connected'), 'the daemon to connect');
    await fleet.api('PUT', '/v1/devices/cli-1/desired/mlp', { version: '1.0.0' });
    await until(() => first.lines.some((l) => l.msg === 'model activated' && l.model === 'mlp@1.0.0'), 'the model to activate');
    first.child.kill('SIGTERM');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const second = agent(['run', '--server', fleet.server.url, '--data-dir', dataDir]);
    await until(() => second.lines.some((l) => l.msg === 'model restored' && l.model === 'mlp@1.0.0'), 'the model restored from disk');
    await until(() => second.lines.some((l) => l.msg === 'connected' && l.deviceId === 'cli-1'), 'the daemon to reconnect as cli-1');
    second.child.kill('SIGTERM');
  }, 60_000);

  it('simulate: enrolls and connects N devices, reports progress, and sends the telemetry of the model they run', async () => {
    const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['cli-sim'], uses: 3 });
    const run = agent([
      'simulate',
      '--server',
      fleet.server.url,
      '--token',
      token,
      '--devices',
      '3',
      '--prefix',
      'cli-sim',
      '--report-every',
      '1',
      '--duration',
      '20',
      '--telemetry-ms',
      '200',
    ]);
    await until(() => run.lines.some((l) => l.msg === 'enrolled' && l.devices === 3), 'enrollment');
    await until(() => run.lines.some((l) => l.msg === 'progress' && l.online === 3), 'three devices online');
    const listed = await fleet.api('GET', '/v1/devices?tag=cli-sim');
    expect(listed.devices.map((d: { id: string }) => d.id)).toEqual(['cli-sim-00000', 'cli-sim-00001', 'cli-sim-00002']);
    await fleet.api('PUT', '/v1/devices/cli-sim-00001/desired/mlp', { version: '1.0.0' });
    await until(() => run.lines.some((l) => l.msg === 'progress' && Number(l.telemetryAcked) >= 2), 'telemetry acknowledged');
    const windows = (await fleet.api('GET', '/v1/telemetry/windows?device=cli-sim-00001')).windows;
    expect(windows.length).toBeGreaterThanOrEqual(2);
    expect(windows[0]).toMatchObject({ model: { name: 'mlp', version: '1.0.0' }, runs: 20 });
    run.child.kill('SIGTERM');
  }, 60_000);
});
