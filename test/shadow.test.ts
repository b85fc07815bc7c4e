/**
 * Shadow runs through the fleet (issue 17, part 3, device side): the server assigns a device a
 * version with a candidate in shadow; the real agent and runtime install it beside the active
 * one, run it on the device's live inputs, and the server receives how it compared in telemetry,
 * and the shadow in the reported state; a document without the shadow ends it.
 */
import { encodeTensor } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Fleet, type FleetDevice, startFleet, until } from './helpers/fleet.ts';
import { fleetctl } from './helpers/fleetctl.ts';

let fleet: Fleet;
let device: FleetDevice;
const sample = [[encodeTensor('features', 'float32', [2, 4], seededValues(8, 1))]];

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes, { sampleInputs: sample });
  await fleet.register('mlp', '1.1.0', mlpModel(8).bytes, { sampleInputs: sample });
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
