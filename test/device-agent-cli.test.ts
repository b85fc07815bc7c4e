/**
 * `edgefleet-agent` as an operator runs it, compiled, with plain node: `run` enrolls (token from a
 * file, the environment or a config file, never the command line), retries a server it cannot
 * reach yet, connects, follows its desired state, logs large downloads' progress, and restores its
 * model from disk after a restart without its token; `simulate` enrolls and connects N devices;
 * `--help` documents every flag, `--version` the version. Logs are pino JSON lines.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeTensor } from '@edgefleet/protocol';
import { heavyMlpModel, mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, startFleet, until } from './helpers/fleet.ts';

const bin = fileURLToPath(new URL('../apps/device-agent/bin/edgefleet-agent.mjs', import.meta.url));
let fleet: Fleet;
const children: ChildProcess[] = [];

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes);
  // 6 MiB of weights: above the 1 MiB from which downloads log their progress.
  await fleet.register('big', '1.0.0', heavyMlpModel(512, 6).bytes, {
    sampleInputs: [[encodeTensor('features', 'float32', [1, 4], seededValues(4, 3))]],
  });
}, 60_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await fleet?.close();
});

function agent(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { child: ChildProcess; lines: Record<string, unknown>[]; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, ...env },
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
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
  return { child, lines, stderr: () => stderr, exited };
}

/** The level names of pino's numbers. */
const LEVEL: Record<number, string> = { 20: 'debug', 30: 'info', 40: 'warn', 50: 'error' };

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
      '--config',
      '--token-file',
      '--log-level',
      'EDGEFLEET_ENROLLMENT_TOKEN',
    ]) {
      expect(help).toContain(flag);
    }
    const { version } = JSON.parse(readFileSync(new URL('../apps/device-agent/package.json', import.meta.url), 'utf8'));
    expect(spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' }).stdout.trim()).toBe(version);
  });

  it('run: refuses a token on the command line, and a config file with an unknown setting, with exit 2 and what to do', async () => {
    const onCommandLine = agent(['run', '--server', fleet.server.url, '--token', 'eft_visible-in-ps']);
    expect(await onCommandLine.exited).toBe(2);
    expect(onCommandLine.stderr()).toContain('visible to every user in ps');
    expect(onCommandLine.stderr()).toContain('--token-file');
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-agent-config-'));
    await writeFile(join(dir, 'agent.json'), JSON.stringify({ server: fleet.server.url, sever: 'typo' }));
    const typo = agent(['run', '--config', join(dir, 'agent.json')]);
    expect(await typo.exited).toBe(2);
    expect(typo.stderr()).toContain('unknown setting "sever"');
    const noServer = agent(['run'], { EDGEFLEET_ENROLLMENT_TOKEN: 'x' });
    expect(await noServer.exited).toBe(2);
    expect(noServer.stderr()).toContain('no fleet server');
  });

  it('run: enrolls from a config file and a token file, and logs the progress of a large download', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-agent-config-'));
    const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['cli'], uses: 1 });
    await writeFile(join(dir, 'enrollment-token'), `${token}\n`, { mode: 0o600 });
    await writeFile(
      join(dir, 'agent.json'),
      JSON.stringify({ server: fleet.server.url, dataDir: join(dir, 'state'), id: 'cli-config', tokenFile: join(dir, 'enrollment-token') }),
    );
    const run = agent(['run', '--config', join(dir, 'agent.json')]);
    await until(() => run.lines.some((l) => l.msg === 'connected' && l.deviceId === 'cli-config'), 'the daemon to connect');
    expect(run.lines[0]).toMatchObject({ level: 30, msg: 'edgefleet-agent starting', token: join(dir, 'enrollment-token') });
    expect(JSON.stringify(run.lines)).not.toContain(token);
    await fleet.api('PUT', '/v1/devices/cli-config/desired/big', { version: '1.0.0' });
    await until(() => run.lines.some((l) => l.msg === 'model activated' && l.model === 'big@1.0.0'), 'the large model to activate');
    const progress = run.lines.filter((l) => l.msg === 'downloading' || l.msg === 'download complete');
    expect(progress[0]).toMatchObject({ msg: 'downloading', model: 'big@1.0.0', file: 'model', total: expect.any(Number) });
    const done = progress.at(-1) ?? {};
    expect(done).toMatchObject({ msg: 'download complete', percent: 100, bytesPerSecond: expect.any(Number) });
    expect(done.bytes).toBe(done.total);
    expect(Number(done.total)).toBeGreaterThan(1024 * 1024);
    // Quiet by default: nothing at debug, and each line pino's shape.
    for (const line of run.lines)
      expect(line).toMatchObject({ level: expect.any(Number), time: expect.any(Number), pid: expect.any(Number), msg: expect.any(String) });
    expect(run.lines.filter((l) => Number(l.level) < 30)).toEqual([]);
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(run.lines.at(-1)).toMatchObject({ msg: 'stopped' });
  }, 60_000);

  it('run: at first boot with the server unreachable, retries enrollment with backoff (one warning) and enrolls once it is up', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-agent-boot-'));
    const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['cli'], uses: 1 });
    await fleet.stopServer();
    const run = agent(['run', '--server', fleet.server.url, '--data-dir', dir, '--id', 'cli-boot', '--log-level', 'debug'], {
      EDGEFLEET_ENROLLMENT_TOKEN: token,
    });
    // Witness: it tried three times while the server was down, and is still running.
    await until(() => run.lines.filter((l) => l.msg === 'enrollment attempt failed').length >= 2, 'failed enrollment attempts');
    expect(run.child.exitCode).toBeNull();
    await fleet.startServer();
    await until(
      () => run.lines.some((l) => l.msg === 'connected' && l.deviceId === 'cli-boot'),
      'the daemon to enroll and connect',
      60_000,
    );
    const warnings = run.lines.filter((l) => Number(l.level) >= 40);
    expect(warnings.map((l) => [LEVEL[Number(l.level)], l.msg])).toEqual([['warn', 'cannot enroll yet; retrying with backoff']]);
    expect(run.lines.find((l) => l.msg === 'enrolled after retrying')).toMatchObject({ attempts: expect.any(Number) });
    const retries = run.lines.filter((l) => l.msg === 'enrollment attempt failed').map((l) => Number(l.retryInMs));
    expect(retries[1]).toBeGreaterThanOrEqual(retries[0] ?? 0);
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  }, 90_000);

  it('run: stops on SIGTERM, exit 0, even when whoever read its log went away (a broken stdout pipe)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-agent-pipe-'));
    // A server that is not there: the agent is retrying its enrollment when it is stopped.
    const run = agent(['run', '--server', 'http://127.0.0.1:9', '--data-dir', dir], { EDGEFLEET_ENROLLMENT_TOKEN: 'eft_unused' });
    await until(() => run.lines.some((l) => l.msg === 'cannot enroll yet; retrying with backoff'), 'the agent retrying');
    run.child.stdout?.destroy();
    run.child.kill('SIGTERM');
    let code: number | null | undefined;
    void run.exited.then((c) => (code = c));
    await until(() => code !== undefined, 'the agent to exit after SIGTERM', 20_000);
    expect(code).toBe(0);
  });

  it('run: enrolls once, follows its desired state, and restores its model after a restart without a token', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-agent-cli-'));
    const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['cli'], uses: 1 });
    const first = agent(['run', '--server', fleet.server.url, '--data-dir', dataDir, '--id', 'cli-1'], {
      EDGEFLEET_ENROLLMENT_TOKEN: token,
    });
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
