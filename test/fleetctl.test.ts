/**
 * fleetctl as an admin runs it: the real CLI in a child process, against a real fleet server with
 * simulated devices over MQTT. Logging in (profiles, a 0600 config), pushing a model, tagging
 * devices, staged rollouts watched to their end with the exit code of how they ended, pause and
 * resume, tokens, the fleet's status, the audit log, every read as JSON and YAML, exit codes,
 * shell completion.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Simulation, startSimulation } from '@edgefleet/device-agent';
import { encodeTensor } from '@edgefleet/protocol';
import { mlpModel, quantizedMlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ADMIN_TOKEN, type Fleet, startFleet, until } from './helpers/fleet.ts';
import { FLEETCTL_BIN, type FleetctlResult, fleetctl as runFleetctl } from './helpers/fleetctl.ts';

let fleet: Fleet;
let home: string;
let work: string;
const simulations: Simulation[] = [];

/** Runs fleetctl with its own HOME (so its config is the test's), optionally feeding stdin. */
function fleetctl(args: readonly string[], options: { stdin?: string; env?: Record<string, string> } = {}) {
  return runFleetctl(args, {
    cwd: work,
    env: { HOME: home, XDG_CONFIG_HOME: join(home, '.config'), ...options.env },
    ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
  });
}
async function json(args: readonly string[]) {
  const result = await fleetctl([...args, '--json']);
  expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout);
}

const sample = [[encodeTensor('features', 'float32', [1, 4], seededValues(4, 1))]];

beforeAll(async () => {
  fleet = await startFleet({ rateLimitPerMinute: 100_000 });
  home = await mkdtemp(join(tmpdir(), 'fleetctl-home-'));
  work = await mkdtemp(join(tmpdir(), 'fleetctl-work-'));
  await writeFile(join(work, 'mlp-1.onnx'), mlpModel(7).bytes);
  await writeFile(join(work, 'mlp-2.onnx'), mlpModel(8).bytes);
  await writeFile(join(work, 'samples.json'), JSON.stringify(sample));
}, 60_000);

afterAll(async () => {
  for (const simulation of simulations) await simulation.stop();
  await fleet?.close();
});

describe('fleetctl', () => {
  it('logs in with a token from stdin, keeps profiles in a 0600 file, and lets the environment override them', async () => {
    const login = await fleetctl(['login', '--server', fleet.server.url, '--with-token'], { stdin: `${ADMIN_TOKEN}\n` });
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain(`Logged in to ${fleet.server.url}`);
    const file = join(home, '.config', 'edgefleet', 'config.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(home, '.config', 'edgefleet'))).mode & 0o777).toBe(0o700);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({
      current: 'default',
      profiles: { default: { server: fleet.server.url } },
    });
    expect(login.stdout + login.stderr).not.toContain(ADMIN_TOKEN);

    expect(await json(['whoami'])).toMatchObject({ id: 'env', name: 'EDGEFLEET_ADMIN_TOKEN', scope: 'admin' });
    // A second profile, with a read-only token; chosen with --profile, then with EDGEFLEET_PROFILE.
    const reader = await json(['tokens', 'create', '--name', 'dashboard', '--scope', 'read']);
    const second = await fleetctl(['login', '--server', fleet.server.url, '--with-token', '--profile', 'viewer'], { stdin: reader.token });
    expect(second.code, second.stderr).toBe(0);
    expect(await json(['whoami', '--profile', 'viewer'])).toMatchObject({ name: 'dashboard', scope: 'read' });
    expect((await fleetctl(['whoami', '--json'], { env: { EDGEFLEET_PROFILE: 'default' } })).stdout).toContain('"scope": "admin"');
    // The last login is the current profile; a read-only token cannot change anything (exit 3).
    const refused = await fleetctl(['devices', 'enroll', 'nope-1']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('EF_FORBIDDEN');
    await fleetctl(['login', '--server', fleet.server.url, '--with-token'], { stdin: ADMIN_TOKEN });
    // Environment variables beat the profile.
    const env = await fleetctl(['whoami', '--json'], { env: { EDGEFLEET_TOKEN: reader.token } });
    expect(JSON.parse(env.stdout)).toMatchObject({ scope: 'read' });
    const badEnv = await fleetctl(['whoami'], { env: { EDGEFLEET_TOKEN: 'efa_nope_nope' } });
    expect(badEnv.code).toBe(3);
    expect(badEnv.stderr).toMatch(/EF_UNAUTHORIZED/);
    expect(badEnv.stderr).toMatch(/fix: /);
  }, 60_000);

  it('answers usage errors, missing logins and unreachable servers with their documented exit codes', async () => {
    const usage = await fleetctl(['devices', 'ls', '--bogus']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("unknown option '--bogus'");
    expect((await fleetctl(['rollouts', 'create', 'mlp', '1.0.0'])).code).toBe(2); // no selector
    const rateAlone = await fleetctl(['rollouts', 'create', 'mlp', '1.0.0', '--all', '--shadow-rate', '0.5']);
    expect(rateAlone.code).toBe(2);
    expect(rateAlone.stderr).toContain('--shadow-rate applies to a shadow stage: add --shadow SIZE');
    // A token is never a command-line argument (it would show in ps and shell history).
    expect((await fleetctl(['whoami', '--token', ADMIN_TOKEN])).code).toBe(2);
    const nobody = await fleetctl(['fleet', 'status'], { env: { HOME: work, XDG_CONFIG_HOME: join(work, 'none') } });
    expect(nobody.code).toBe(3);
    expect(nobody.stderr).toContain('fleetctl login');
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as { port: number };
        server.close(() => resolve(free));
      });
    });
    const down = await fleetctl(['fleet', 'status'], { env: { EDGEFLEET_SERVER: `http://127.0.0.1:${port}`, EDGEFLEET_TOKEN: 'x' } });
    expect(down.code).toBe(6);
    expect(down.stderr).toContain(`cannot reach http://127.0.0.1:${port}`);
    const missing = await fleetctl(['devices', 'show', 'ghost']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('EF_DEVICE_UNKNOWN');
    const help = await fleetctl(['rollouts', 'watch', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/10\s+rolled back/);
  }, 60_000);

  it('pushes models with sample inputs and shows their signed manifest; moves aliases; deletes with --yes only', async () => {
    const pushed = await fleetctl([
      'models',
      'push',
      'mlp-1.onnx',
      '--name',
      'mlp',
      '--version',
      '1.0.0',
      '--samples',
      'samples.json',
      '--metadata',
      'team=edge',
      'owner=ml',
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toContain('registered and signed mlp@1.0.0');
    expect(pushed.stdout).toMatch(/inputs:\s+features float32\[batch,4\]/);
    expect(pushed.stdout).toMatch(/golden vectors:\s+golden-vectors\.json/);
    const second = await json(['models', 'push', 'mlp-2.onnx', '--name', 'mlp', '--version', '2.0.0', '--samples', 'samples.json']);
    expect(second).toMatchObject({ name: 'mlp', version: '2.0.0', manifest: { payload: { name: 'mlp', version: '2.0.0' } } });
    // A reference dataset for drift, checked against the telemetry features it is uploaded with.
    await writeFile(
      join(work, 'telemetry.json'),
      JSON.stringify({
        features: [
          { name: 'a', source: 'input', tensor: 'features', kind: 'column', index: 0 },
          { name: 'b', source: 'input', tensor: 'features', kind: 'column', index: 1 },
        ],
      }),
    );
    await writeFile(join(work, 'reference.csv'), `a,b\n${Array.from({ length: 40 }, (_, i) => `${i % 5},${i % 7}`).join('\n')}\n`);
    const withReference = await fleetctl([
      'models',
      'push',
      'mlp-1.onnx',
      '--name',
      'referenced',
      '--version',
      '1.0.0',
      '--telemetry',
      'telemetry.json',
      '--reference',
      'reference.csv',
    ]);
    expect(withReference.code, withReference.stderr).toBe(0);
    expect(withReference.stdout).toMatch(/reference:\s+40 rows \(a, b\)/);
    expect((await json(['drift', 'show', 'referenced@1.0.0'])).status).toBe('no-data');
    const again = await fleetctl(['models', 'push', 'mlp-2.onnx', '--name', 'mlp', '--version', '2.0.0']);
    expect(again.code).toBe(5);
    expect(again.stderr).toContain('EF_MODEL_VERSION_EXISTS');

    expect((await json(['models', 'ls'])).map((m: { name: string }) => m.name)).toContain('mlp');
    expect(await json(['models', 'alias', 'mlp', 'production', '1.0.0'])).toMatchObject({ alias: 'production', version: '1.0.0' });
    const listed = await json(['models', 'ls', 'mlp']);
    expect(listed.versions.map((v: { version: string }) => v.version)).toEqual(['1.0.0', '2.0.0']);
    expect(listed.aliases).toEqual([expect.objectContaining({ alias: 'production', version: '1.0.0' })]);
    expect((await json(['models', 'show', 'mlp@production'])).version).toBe('1.0.0');
    expect((await json(['models', 'show', 'mlp'])).version).toBe('2.0.0');
    expect((await fleetctl(['models', 'show', 'mlp@1.0.0'])).stdout).toMatch(/signed by:/);

    await fleetctl(['models', 'push', 'mlp-1.onnx', '--name', 'scratch', '--version', '0.0.1']);
    const unconfirmed = await fleetctl(['models', 'rm', 'scratch@0.0.1']);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain('--yes');
    expect((await fleetctl(['models', 'rm', 'scratch@0.0.1', '--yes'])).code).toBe(0);
    expect((await fleetctl(['models', 'show', 'scratch@0.0.1'])).code).toBe(4);
  }, 60_000);

  it('enrolls devices, tags them, rolls a version out in stages and watches it complete (exit 0)', async () => {
    const stable = [];
    for (let i = 0; i < 3; i++) stable.push(await json(['devices', 'enroll', `ctl-${i}`, '--tag', 'ring=stable']));
    expect(stable[0]).toMatchObject({ id: 'ctl-0', secret: expect.any(String), tags: ['ring=stable'] });
    simulations.push(
      await startSimulation({
        serverUrl: fleet.server.url,
        mqttUrl: fleet.server.broker.urls.tcp,
        keySet: fleet.keySet,
        devices: stable.map((d: { id: string; secret: string }) => ({ id: d.id, secret: d.secret })),
      }),
    );
    await until(async () => (await json(['devices', 'ls', '--online'])).length === 3, 'three devices online');
    const tagged = await json(['devices', 'tag', 'ctl-0', 'ring=canary', '--remove', 'ring=stable']);
    expect(tagged.tags).toEqual(['ring=canary']);
    expect((await json(['devices', 'ls', '--tag', 'ring=canary'])).map((d: { id: string }) => d.id)).toEqual(['ctl-0']);

    const first = await fleetctl(['rollouts', 'create', 'mlp', 'production', '--all', '--stages', '1,100%', '--watch', '--interval', '1s']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/state:\s+completed/);
    const second = await fleetctl([
      'rollouts',
      'create',
      'mlp',
      '2.0.0',
      '--tag',
      'ring=canary',
      '--stages',
      '100%',
      '--max-failure-rate',
      '0',
      '--watch',
      '--json',
    ]);
    expect(second.code, second.stderr).toBe(0);
    const done = JSON.parse(second.stdout);
    expect(done).toMatchObject({ state: 'completed', version: '2.0.0' });
    expect(done.devices.map((d: { id: string }) => d.id)).toEqual(['ctl-0']);

    const history = await json(['devices', 'history', 'ctl-0', '--model', 'mlp']);
    expect(history.map((e: { kind: string }) => e.kind)).toContain('activated');
    expect((await json(['devices', 'show', 'ctl-0'])).reported.models).toEqual([expect.objectContaining({ name: 'mlp', state: 'active' })]);
    const status = await json(['fleet', 'status']);
    expect(status.devices).toMatchObject({ active: 3, online: 3, failing: 0 });
    const mlp = status.models.find((m: { name: string }) => m.name === 'mlp');
    expect(mlp.versions).toEqual([
      { version: '2.0.0', devices: 1, online: 1, variants: [{ variant: 'reference', devices: 1 }] },
      { version: '1.0.0', devices: 2, online: 2, variants: [{ variant: 'reference', devices: 2 }] },
    ]);
    expect(mlp.compliance).toMatchObject({ upToDate: 2, behind: 1 });
    const table = await fleetctl(['fleet', 'status']);
    expect(table.stdout).toMatch(/mlp\s+1\.0\.0\s+2\s+0\s+1\s+0\s+2\.0\.0: 1, 1\.0\.0: 2/);

    // A completed rollout is final: rolling its devices back is a new rollout, signed as a rollback.
    expect((await fleetctl(['rollouts', 'rollback', done.id, '--yes'])).code).toBe(2);
    const back = await fleetctl(['rollouts', 'rollback', done.id, '--to', '1.0.0', '--yes']);
    expect(back.code, back.stderr).toBe(0);
    const backId = /(ro-[0-9a-f]{8})$/.exec(back.stdout.trim())?.[1] ?? '';
    expect(back.stdout).toContain(`rolling 1 devices of ${done.id} back to mlp@1.0.0`);
    expect((await fleetctl(['rollouts', 'watch', backId])).code).toBe(0);
    expect((await json(['devices', 'show', 'ctl-0'])).reported.models[0].active.version).toBe('1.0.0');
  }, 120_000);

  it('watches a failing rollout roll back (exit 10), and pauses, resumes and aborts one', async () => {
    const failing = [];
    for (let i = 0; i < 2; i++) failing.push(await json(['devices', 'enroll', `bad-${i}`, '--tag', 'ring=bad']));
    simulations.push(
      await startSimulation({
        serverUrl: fleet.server.url,
        mqttUrl: fleet.server.broker.urls.tcp,
        keySet: fleet.keySet,
        devices: failing.map((d: { id: string; secret: string }) => ({ id: d.id, secret: d.secret })),
        faults: { failAcceptance: 1 },
      }),
    );
    await until(async () => (await json(['devices', 'ls', '--tag', 'ring=bad', '--online'])).length === 2, 'the failing devices online');
    const created = await json(['rollouts', 'create', 'mlp', '2.0.0', '--tag', 'ring=bad', '--stages', '100%', '--max-failure-rate', '0']);
    const watched = await fleetctl(['rollouts', 'watch', created.id, '--interval', '1s']);
    expect(watched.code, watched.stdout + watched.stderr).toBe(10);
    expect(watched.stdout).toMatch(/state:\s+rolled_back/);
    expect(watched.stdout).toContain('maxFailureRate');

    // A long soak: pause (If-Match), show, resume, then abort.
    const slow = await json(['rollouts', 'create', 'mlp', '1.0.0', '--device', 'ctl-1', '--stages', '1', '--soak', '1h']);
    expect((await fleetctl(['rollouts', 'pause', slow.id])).stdout).toContain('paused');
    expect((await json(['rollouts', 'show', slow.id])).state).toBe('paused');
    const exitOnPause = await fleetctl(['rollouts', 'watch', slow.id, '--exit-on-pause']);
    expect(exitOnPause.code).toBe(12);
    expect((await fleetctl(['rollouts', 'resume', slow.id])).stdout).toContain('running');
    // Its gates as the engine measured them, each against its threshold (as the dashboard shows them).
    let shown = '';
    await until(async () => {
      shown = (await fleetctl(['rollouts', 'show', slow.id])).stdout;
      return /failure_rate\s+0\s+<= [\d.]+\s+passes/.test(shown);
    }, 'the gates measured');
    expect(shown).toMatch(/gates of stage 1, measured \d{4}-/);
    expect(shown).toMatch(/devices_reporting\s+1\s+>= \d+\s+(passes|fails)/);
    const timeout = await fleetctl(['rollouts', 'watch', slow.id, '--timeout', '1s']);
    expect(timeout.code).toBe(13);
    expect((await fleetctl(['rollouts', 'abort', slow.id])).code).toBe(2); // needs --yes off a terminal
    expect((await fleetctl(['rollouts', 'abort', slow.id, '--yes'])).stdout).toContain('aborted');
    expect((await json(['rollouts', 'ls', '--state', 'aborted'])).map((r: { id: string }) => r.id)).toContain(slow.id);
    const rolledBack = await fleetctl(['rollouts', 'rollback', created.id, '--yes']);
    expect(rolledBack.code).toBe(0);

    // A retried create with the same key is the same rollout.
    const key = ['--idempotency-key', 'ctl-retry-1'];
    const a = await json(['rollouts', 'create', 'mlp', '2.0.0', '--device', 'ctl-2', '--stages', '100%', '--soak', '1h', ...key]);
    const b = await json(['rollouts', 'create', 'mlp', '2.0.0', '--device', 'ctl-2', '--stages', '100%', '--soak', '1h', ...key]);
    expect(b.id).toBe(a.id);
    await fleetctl(['rollouts', 'abort', a.id, '--yes']);
  }, 120_000);

  it('evaluates versions on held-out data, sets a promotion policy and is refused a rollout that fails it', async () => {
    const argmax = (row: Float32Array) => row.indexOf(Math.max(...row));
    const rows = Array.from({ length: 120 }, (_, i) => seededValues(4, 500 + i, 2));
    const csv = `a,b,c,d,label\n${rows.map((x) => `${[...x].join(',')},${argmax(mlpModel(7).reference(x))}`).join('\n')}\n`;
    await writeFile(join(work, 'held-out.csv'), csv);
    const pushed = await fleetctl([
      'models',
      'push',
      'mlp-1.onnx',
      '--name',
      'quality',
      '--version',
      '1.0.0',
      '--evaluation',
      'held-out.csv',
      '--task',
      'classification',
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const id = /evaluation:\s+(ev-[0-9a-f]{8})/.exec(pushed.stdout)?.[1] as string;
    expect(id).toBeDefined();
    const waited = await fleetctl(['evaluations', 'wait', id]);
    const shown = await fleetctl(['models', 'show', 'quality@1.0.0']);
    expect(shown.stdout).toMatch(/evaluation:\s+ev-[0-9a-f]{8} on held-out\.csv \(classification\): accuracy 1, macroF1 1/);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toMatch(/status:\s+succeeded/);
    expect(waited.stdout).toMatch(/accuracy:\s+1 {2}\[0\.9\d+, 1\] 95%/);
    expect(waited.stdout).toMatch(/CLASS\s+SUPPORT\s+PRECISION\s+RECALL\s+F1/);

    await fleetctl(['models', 'push', 'mlp-2.onnx', '--name', 'quality', '--version', '1.1.0']);
    const evaluated = await fleetctl([
      'models',
      'evaluate',
      'quality@1.1.0',
      'held-out.csv',
      '--task',
      'classification',
      '--labels',
      'a,b,c',
    ]);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const accuracy = Number(/accuracy:\s+([0-9.]+)/.exec(evaluated.stdout)?.[1]);
    expect(accuracy).toBeLessThan(0.8);
    expect(evaluated.stdout).toMatch(/^a\s+\d+/m); // classes by name
    const listed = await json(['models', 'evaluations', 'quality@1.1.0']);
    expect(listed).toEqual([expect.objectContaining({ status: 'succeeded', task: { kind: 'classification', labels: ['a', 'b', 'c'] } })]);

    const policy = await fleetctl(['models', 'policy', 'quality', '--min', 'accuracy=0.8', '--max-regression', 'macroF1=0.05']);
    expect(policy.code, policy.stderr).toBe(0);
    expect(policy.stdout).toMatch(/accuracy\s+at least 0\.8/);
    const verdict = await fleetctl(['models', 'verdict', 'quality@1.1.0']);
    expect(verdict.code).toBe(5);
    expect(verdict.stdout).toMatch(/fails the promotion policy/);
    expect(verdict.stdout).toMatch(/accuracy\s+minimum\s+0\.\d+\s+0\.8/);
    const refused = await fleetctl(['rollouts', 'create', 'quality', '1.1.0', '--tag', 'nobody=here', '--stages', '100%']);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('EF_POLICY_FAILED');
    expect(refused.stderr).toMatch(/accuracy 0\.\d+ < minimum 0\.8/);
    // Overridden, the policy lets it through to the next check (no device carries that tag).
    const overridden = await fleetctl([
      'rollouts',
      'create',
      'quality',
      '1.1.0',
      '--tag',
      'nobody=here',
      '--stages',
      '100%',
      '--override-policy',
      'a test',
    ]);
    expect(overridden.stderr).toContain('EF_ROLLOUT_NO_DEVICES');
    const cleared = await fleetctl(['models', 'policy', 'quality', '--clear']);
    expect(cleared.stdout).toContain('quality: no promotion policy');
  });

  it('pushes a version with variants (one uploaded, one quantized by the server) and shows what was measured of each', async () => {
    await writeFile(join(work, 'mlp-int8.onnx'), quantizedMlpModel(7).bytes);
    const pushed = await fleetctl([
      'models',
      'push',
      'mlp-1.onnx',
      '--name',
      'builds',
      '--version',
      '1.0.0',
      '--samples',
      'samples.json',
      '--variant',
      'q8=mlp-int8.onnx',
      '--variant-providers',
      'q8=wasm',
      '--quantize',
      'int8',
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toMatch(/variant:\s+q8 int8 .* differs by up to 0\.0\d+ on the golden inputs/);
    expect(pushed.stdout).toMatch(/variant:\s+int8 int8 .*quantized here \(1 layers\)/);
    const shown = await json(['models', 'show', 'builds@1.0.0']);
    expect(
      shown.manifest.payload.variants.map((v: { name: string; executionProviders: string[] }) => [v.name, v.executionProviders]),
    ).toEqual([
      ['q8', ['wasm']],
      ['int8', ['wasm', 'cpu']],
    ]);
    expect((await fleetctl(['models', 'show', 'builds@1.0.0'])).stdout).toMatch(
      /variant:\s+int8 int8 .* on wasm,cpu, tolerance 0\.0\d+, measured 0\.0\d+/,
    );
    const wrong = await fleetctl(['models', 'push', 'mlp-1.onnx', '--name', 'builds', '--version', '1.0.1', '--quantize', 'int4']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('--quantize int4: the server quantizes to int8 only');
    const refused = await fleetctl([
      'models',
      'push',
      'mlp-1.onnx',
      '--name',
      'builds',
      '--version',
      '1.0.2',
      '--variant',
      'other=mlp-2.onnx',
      '--samples',
      'samples.json',
    ]);
    expect(refused.stderr).toContain('EF_VARIANT_INVALID');
  });

  it('creates, lists and revokes tokens, and names them in the audit log', async () => {
    const created = await json(['tokens', 'create', '--name', 'ci-deployer', '--scope', 'admin', '--expires', '30d']);
    expect(created).toMatchObject({ name: 'ci-deployer', scope: 'admin', token: expect.stringMatching(/^efa_/) });
    const listed = await fleetctl(['tokens', 'ls']);
    expect(listed.stdout).toContain('ci-deployer');
    expect(listed.stdout).not.toContain(created.token);
    await fleetctl(['devices', 'enroll', 'by-ci'], { env: { EDGEFLEET_TOKEN: created.token } });
    const audit = await json(['audit', 'ls', '--target', 'device:by-ci']);
    expect(audit[0]).toMatchObject({ action: 'device.create', actorName: 'ci-deployer' });
    expect((await fleetctl(['audit', 'ls', '--target', 'device:by-ci'])).stdout).toContain(`ci-deployer (${created.id})`);
    expect((await json(['tokens', 'revoke', created.id, '--yes'])).state).toBe('revoked');
    const after = await fleetctl(['whoami'], { env: { EDGEFLEET_TOKEN: created.token } });
    expect(after.code).toBe(3);
    const enrollment = await json([
      'tokens',
      'create',
      '--enrollment',
      '--name',
      'line-3',
      '--tag',
      'site=lyon',
      '--uses',
      '5',
      '--expires',
      '7d',
    ]);
    expect((await json(['tokens', 'ls', '--enrollment'])).map((t: { id: string }) => t.id)).toContain(enrollment.id);
    expect((await json(['tokens', 'revoke', enrollment.id, '--enrollment', '--yes'])).state).toBe('revoked');
  }, 60_000);

  it('prints every read as JSON and as YAML, the same data', async () => {
    const reads = [
      ['whoami'],
      ['models', 'ls'],
      ['models', 'ls', 'mlp'],
      ['models', 'show', 'mlp@1.0.0'],
      ['devices', 'ls'],
      ['devices', 'show', 'ctl-1'],
      ['devices', 'history', 'ctl-1'],
      ['tokens', 'ls'],
      ['tokens', 'ls', '--enrollment'],
      ['rollouts', 'ls'],
      ['drift', 'show', 'mlp@1.0.0'],
      ['fleet', 'status'],
      ['audit', 'ls'],
      ['version'],
    ];
    for (const read of reads) {
      const asJson = await json(read);
      const asYaml = await fleetctl([...read, '-o', 'yaml']);
      expect(asYaml.code, `${read.join(' ')} -o yaml: ${asYaml.stderr}`).toBe(0);
      const yamlValue = parseYaml(asYaml.stdout);
      // Timestamps that moved between the two calls aside, the same shape.
      expect(Object.keys(yamlValue ?? {}).sort(), read.join(' ')).toEqual(Object.keys(asJson ?? {}).sort());
    }
    const drift = await json(['drift', 'show', 'mlp@1.0.0']);
    expect(drift).toMatchObject({ model: 'mlp', version: '1.0.0', status: 'no-reference', scores: [] });
    expect((await fleetctl(['devices', 'ls', '-o', 'xml'])).code).toBe(2);
  }, 120_000);

  it('draws progress bars and colour on a terminal (a pseudo-terminal from script(1)), and neither when piped', async () => {
    const quote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`;
    const onTerminal = (args: readonly string[]) =>
      new Promise<FleetctlResult>((resolve, reject) => {
        // script(1) runs the command on a pseudo-terminal: stdout and stderr are a TTY, as in a shell.
        const command = [process.execPath, FLEETCTL_BIN, ...args].map(quote).join(' ');
        const child = spawn('script', ['-qefc', command, '/dev/null'], {
          cwd: work,
          env: { PATH: process.env.PATH ?? '', HOME: home, XDG_CONFIG_HOME: join(home, '.config'), TERM: 'xterm-256color' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr: '' }));
      });
    const pushed = await onTerminal(['models', 'push', 'mlp-1.onnx', '--name', 'on-a-tty', '--version', '1.0.0']);
    expect(pushed.code, pushed.stdout).toBe(0);
    expect(pushed.stdout).toMatch(/uploading mlp-1\.onnx \[[█░]+\] 100%/);
    expect(pushed.stdout).toContain('\x1b[32m✓');
    const rollouts = await json(['rollouts', 'ls', '--state', 'completed']);
    const watched = await onTerminal(['rollouts', 'watch', rollouts[0].id]);
    expect(watched.code, watched.stdout).toBe(0);
    expect(watched.stdout).toMatch(/stage 1 \[[█░]+\] \d+\/\d+/);
    expect(watched.stdout).toMatch(/completed/);
    // The same commands piped: no bar, no colour.
    const piped = await fleetctl(['models', 'push', 'mlp-1.onnx', '--name', 'piped', '--version', '1.0.0']);
    expect(piped.stdout + piped.stderr).not.toContain('\x1b[');
    expect(piped.stderr).not.toContain('uploading');
  }, 60_000);

  it('writes shell completion scripts that know every command', async () => {
    const bash = await fleetctl(['completion', 'bash']);
    expect(bash.code).toBe(0);
    for (const word of ['rollouts', 'watch', '--max-failure-rate', 'history', '--with-token']) expect(bash.stdout).toContain(word);
    const syntax = await new Promise<number | null>((resolve) => {
      const check = spawn('bash', ['-n'], { stdio: ['pipe', 'ignore', 'ignore'] });
      check.on('close', resolve);
      check.stdin.end(bash.stdout);
    });
    expect(syntax).toBe(0);
    expect((await fleetctl(['completion', 'fish'])).stdout).toContain(
      "complete -c fleetctl -n '__fish_seen_subcommand_from rollouts' -a 'watch'",
    );
    expect((await fleetctl(['completion', 'zsh'])).stdout).toContain('#compdef fleetctl');
    expect((await fleetctl(['completion', 'tcsh'])).code).toBe(2);
  }, 30_000);
});
