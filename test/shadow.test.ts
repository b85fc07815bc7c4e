/**
 * Shadow runs through the fleet (issue 17, part 3): the server assigns a device a version with a
 * candidate in shadow; the real agent and runtime install it beside the active one, run it on the
 * device's live inputs, and the server receives how it compared in telemetry, and the shadow in
 * the reported state; a document without the shadow ends it. A rollout's shadow stage does the
 * same for its devices and judges the candidate on their comparisons: one that disagrees with the
 * live version is stopped there (never answering for real), one that agrees goes live.
 */
import { enrollDevices, startSimulation } from '@edgefleet/device-agent';
import { encodeTensor } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Fleet, type FleetDevice, rollOutAndWait, startFleet, until } from './helpers/fleet.ts';
import { fleetctl } from './helpers/fleetctl.ts';

let fleet: Fleet;
let device: FleetDevice;
const sample = [[encodeTensor('features', 'float32', [2, 4], seededValues(8, 1))]];

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes, { sampleInputs: sample });
  await fleet.register('mlp', '1.1.0', mlpModel(8).bytes, { sampleInputs: sample });
  // The same weights as 1.0.0 under a new version: it answers as the live one does.
  await fleet.register('mlp', '1.2.0', mlpModel(7).bytes, { sampleInputs: sample });
  device = await fleet.startDevice('shadow-0');
}, 90_000);

afterAll(async () => {
  await fleet?.close();
});

/** The class each model picks per row, counted from their reference implementations. */
function agreement(batches: Float32Array[]): number {
  let agreed = 0;
  let rows = 0;
  for (const data of batches) {
    const [a, b] = [mlpModel(7).reference(data), mlpModel(8).reference(data)];
    for (let r = 0; r < data.length / 4; r++) {
      const [ra, rb] = [Array.from(a.subarray(r * 3, r * 3 + 3)), Array.from(b.subarray(r * 3, r * 3 + 3))];
      rows++;
      if (ra.indexOf(Math.max(...ra)) === rb.indexOf(Math.max(...rb))) agreed++;
    }
  }
  return agreed / rows;
}

describe('a candidate in shadow on a live device', () => {
  it('runs beside the active version on live inputs, and the server hears how it compared', async () => {
    // With fleetctl, as an admin would.
    const env = { EDGEFLEET_SERVER: fleet.server.url, EDGEFLEET_TOKEN: ADMIN_TOKEN, NO_COLOR: '1' };
    const assigned = await fleetctl(['devices', 'assign', 'shadow-0', 'mlp@1.0.0', '--shadow', '1.1.0', '--shadow-rate', '1'], { env });
    expect(assigned.code, assigned.stderr).toBe(0);
    expect(assigned.stdout).toContain('shadow-0 runs mlp@1.0.0, 1.1.0 in shadow on 100% of its inputs');
    await until(() => device.runtime.models()[0]?.shadow?.version === '1.1.0', 'the candidate in shadow on the device');
    expect(device.activeVersion('mlp')).toBe('1.0.0');

    // Live traffic on the device; each shadow sample accounted for (in a closed window) before the next call.
    const batches = Array.from({ length: 30 }, (_, i) => seededValues(8, 300 + i, 2));
    let compared = 0;
    const counted = device.runtime.on('telemetry-window', (w) => {
      compared += (w.shadow?.runs ?? 0) + (w.shadow?.skipped ?? 0);
    });
    for (const [i, data] of batches.entries()) {
      const answer = await device.runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data } });
      const expected = mlpModel(7).reference(data);
      const scores = (answer.scores?.data ?? new Float32Array()) as Float32Array;
      expect(scores).toHaveLength(6);
      for (const [j, value] of scores.entries()) expect(Math.abs(value - (expected[j] ?? 0))).toBeLessThan(1e-5);
      await until(
        () => {
          device.runtime.flushTelemetry();
          return compared >= i + 1;
        },
        `shadow sample ${i + 1}`,
      );
    }
    counted();

    type Window = { shadow?: { version: string; runs: number; skipped: number; rows: number; agreement: number | null } };
    let windows: Window[] = [];
    await until(async () => {
      windows = (await fleet.api<{ windows: Window[] }>('GET', '/v1/telemetry/windows?device=shadow-0&model=mlp&limit=200')).windows;
      return windows.reduce((sum, w) => sum + (w.shadow ? w.shadow.runs + w.shadow.skipped : 0), 0) >= 30;
    }, 'the windows with the shadow samples at the server');
    const shadows = windows.flatMap((w) => (w.shadow ? [w.shadow] : []));
    expect(new Set(shadows.map((s) => s.version))).toEqual(new Set(['1.1.0']));
    const runs = shadows.reduce((sum, s) => sum + s.runs, 0);
    const rows = shadows.reduce((sum, s) => sum + s.rows, 0);
    const agreed = shadows.reduce((sum, s) => sum + (s.agreement ?? 0) * s.rows, 0);
    expect(runs).toBe(30);
    expect(rows).toBe(60);
    expect(agreed / rows).toBeCloseTo(agreement(batches), 10);
    expect(agreed / rows).toBeLessThan(1); // other weights disagree on some inputs

    const reported = await fleet.api<{ reported: { models: { shadow?: { version: string; rate: number } }[] } }>(
      'GET',
      '/v1/devices/shadow-0',
    );
    expect(reported.reported.models[0]?.shadow).toMatchObject({ version: '1.1.0', rate: 1 });

    // The next document has no shadow: the device ends it, and says so.
    await fleet.api('PUT', '/v1/devices/shadow-0/desired/mlp', { version: '1.0.0' });
    await until(() => device.runtime.models()[0]?.shadow === undefined, 'the shadow ended on the device');
    await until(async () => {
      const after = await fleet.api<{ reported: { models: { shadow?: unknown }[] } }>('GET', '/v1/devices/shadow-0');
      return after.reported.models[0]?.shadow === undefined;
    }, 'the reported state without the shadow');
    const refused = await fleet.server.app.inject({
      method: 'PUT',
      url: '/v1/devices/shadow-0/desired/mlp',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { version: '1.0.0', shadow: { version: '1.0.0' } },
    });
    expect(refused.json()).toMatchObject({ code: 'EF_SCHEMA_INVALID' });
  });
});

describe("a rollout's shadow stage, judged on the devices' live inputs", () => {
  const env = () => ({ EDGEFLEET_SERVER: fleet.server.url, EDGEFLEET_TOKEN: ADMIN_TOKEN, NO_COLOR: '1' });
  let devices: FleetDevice[] = [];
  let input = 0;

  beforeAll(async () => {
    devices = [await fleet.startDevice('stage-1'), await fleet.startDevice('stage-2')];
    for (const d of devices) await fleet.api('PUT', `/v1/devices/${d.id}/desired/mlp`, { version: '1.0.0' });
    await until(() => devices.every((d) => d.activeVersion('mlp') === '1.0.0'), 'both devices on 1.0.0');
  }, 60_000);

  type View = {
    state: string;
    currentStage: number;
    reason: Record<string, unknown> | null;
    stages: { shadow: boolean; shadowing: number; active: number }[];
    gates: { shadow?: { runs: number; agreement: number | null } } | null;
  };

  /**
   * Live traffic on both devices while the rollout runs: each call waits until its shadow sample
   * is accounted for in a closed window (run or skipped), so every comparison reaches the server.
   */
  async function traffic(id: string, done: (view: View) => boolean): Promise<{ view: View; batches: Float32Array[] }> {
    const batches: Float32Array[] = [];
    for (let i = 0; i < 400; i++) {
      const view = await fleet.api<View>('GET', `/v1/rollouts/${id}`);
      if (done(view)) return { view, batches };
      for (const d of devices) {
        if (d.runtime.models()[0]?.shadow === undefined) continue;
        const data = seededValues(8, 1000 + input++, 2);
        let compared = 0;
        const counted = d.runtime.on('telemetry-window', (w) => {
          compared += (w.shadow?.runs ?? 0) + (w.shadow?.skipped ?? 0);
        });
        await d.runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data } });
        batches.push(data);
        try {
          // Or the shadow ended meanwhile (the stage decided, the document without it arrived): a
          // sample still waiting for its quiet spell is then dropped, never accounted.
          await until(() => {
            d.runtime.flushTelemetry();
            return compared >= 1 || d.runtime.models()[0]?.shadow === undefined;
          }, `the shadow sample of input ${input} on ${d.id}`);
        } finally {
          counted();
        }
      }
      // Give the devices time to get the document, install the shadow, and the server to read windows.
      if (devices.every((d) => d.runtime.models()[0]?.shadow === undefined)) await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`rollout ${id} never reached the awaited state`);
  }

  /** A shadow stage on both devices (every input compared), then one live stage, with fleetctl. */
  async function createShadowRollout(version: string): Promise<string> {
    const created = await fleetctl(
      ['rollouts', 'create', 'mlp', version, '--device', 'stage-1', 'stage-2', '--shadow', '2', '--shadow-rate', '1'].concat([
        '--min-shadow-agreement',
        '0.95',
        '--min-shadow-runs',
        '20',
        '--min-devices',
        '2',
        '--stages',
        '100%',
        '--output',
        'json',
      ]),
      { env: env() },
    );
    expect(created.code, created.stderr).toBe(0);
    return JSON.parse(created.stdout).id as string;
  }

  it('stops a candidate whose answers disagree with the live version in its shadow stage: it never answers for real', async () => {
    const id = await createShadowRollout('1.1.0');
    const activated: string[] = [];
    const off = devices.map((d) => d.runtime.on('activated', ({ model }) => activated.push(`${d.id}:${model.version}`)));
    const { view, batches } = await traffic(id, (v) => v.state !== 'running' && v.state !== 'rolling_back');
    for (const stop of off) stop();
    expect(view.state).toBe('rolled_back');
    expect(view.currentStage).toBe(0);
    expect(view.reason).toMatchObject({ gate: 'minShadowAgreement', limit: 0.95, devicesReporting: 2 });
    // The candidate's agreement with the live version, on the very inputs the devices saw, counted apart.
    expect(agreement(batches)).toBeLessThan(0.95);
    expect(view.reason?.agreement as number).toBeLessThan(0.95);
    expect(view.reason?.runs as number).toBeGreaterThanOrEqual(20);
    // Nothing of 1.1.0 ever answered: both devices on 1.0.0, their shadows ended.
    await until(() => devices.every((d) => d.runtime.models()[0]?.shadow === undefined), 'the shadows ended');
    expect(devices.map((d) => d.activeVersion('mlp'))).toEqual(['1.0.0', '1.0.0']);
    expect(activated).toEqual([]);
    const shown = await fleetctl(['rollouts', 'show', id], { env: env() });
    expect(shown.stdout).toMatch(/rolled_back/);
    expect(shown.stdout).toMatch(/shadow 100%/);
    expect(shown.stdout).toContain('minShadowAgreement');
  }, 90_000);

  it('puts a candidate that agrees live after its shadow stage', async () => {
    const id = await createShadowRollout('1.2.0');
    let shown = '';
    const { view } = await traffic(id, (v) => {
      return v.currentStage > 0 || v.state !== 'running';
    });
    expect(view.state).not.toBe('rolled_back');
    expect(view.stages[0]).toMatchObject({ shadow: true });
    await until(async () => (await fleet.api<View>('GET', `/v1/rollouts/${id}`)).state === 'completed', 'the rollout completed', 60_000);
    await until(() => devices.every((d) => d.activeVersion('mlp') === '1.2.0'), 'both devices on 1.2.0');
    expect(devices.map((d) => d.runtime.models()[0]?.shadow)).toEqual([undefined, undefined]);
    shown = (await fleetctl(['rollouts', 'show', id], { env: env() })).stdout;
    expect(shown).toMatch(/completed/);
    // The stage's decision is in the audit log: the shadow stage passed into the live one.
    const audit = await fleet.api<{ entries: { action: string; after: Record<string, unknown> }[] }>(
      'GET',
      `/v1/audit?target=rollout:${id}`,
    );
    expect(audit.entries.find((e) => e.action === 'rollout.stage')?.after).toMatchObject({ current_stage: 1, live: true });
  }, 90_000);
});

describe('a shadow stage over devices that cannot run one', () => {
  it('counts simulated devices (no inference) failed with EF_ENGINE_UNAVAILABLE at once, and rolls back', async () => {
    const { token } = await fleet.api<{ token: string }>('POST', '/v1/enrollment-tokens', { tags: ['fleet=sim-shadow'], uses: 3 });
    const { devices } = await enrollDevices(fleet.server.url, token, 3, 'sim-shadow');
    const simulation = await startSimulation({
      serverUrl: fleet.server.url,
      mqttUrl: fleet.server.broker.urls.tcp,
      keySet: fleet.keySet,
      devices,
    });
    try {
      await rollOutAndWait(fleet, { model: 'mlp', version: '1.0.0', selector: { tags: ['fleet=sim-shadow'] }, stages: [{ percent: 100 }] });
      const { id } = await fleet.api<{ id: string }>('POST', '/v1/rollouts', {
        model: 'mlp',
        version: '1.1.0',
        selector: { tags: ['fleet=sim-shadow'] },
        stages: [{ percent: 100, shadow: true }, { percent: 100 }],
      });
      await until(async () => (await fleet.api('GET', `/v1/rollouts/${id}`)).state === 'rolled_back', 'the shadow stage rolled back');
      const view = await fleet.api('GET', `/v1/rollouts/${id}`);
      expect(view.reason).toMatchObject({ gate: 'maxFailureRate', stage: 0, errors: ['EF_ENGINE_UNAVAILABLE'] });
      expect(simulation.countActive('mlp', '1.0.0')).toBe(3);
    } finally {
      await simulation.stop();
    }
  }, 60_000);
});
