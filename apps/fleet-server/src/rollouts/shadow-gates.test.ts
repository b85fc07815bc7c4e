import { numericProfile, observe, toWire } from '@edgefleet/drift';
import type { TelemetryWindow } from '@edgefleet/protocol';
import { splitmix } from '@edgefleet/test-utils';
import { describe, expect, it } from 'vitest';
import type { ShadowGates } from './decide.ts';
import { judgeShadow, sumShadow } from './shadow-gates.ts';

type Summary = NonNullable<TelemetryWindow['shadow']>;

/** A window's shadow summary built from per-input facts, as the device would add them up. */
function summary(version: string, inputs: readonly { agree: boolean; diff: number; ratio: number; error?: boolean }[]): Summary {
  const ratios = numericProfile({ k: 200 });
  let agreed = 0;
  let max = 0;
  let sum = 0;
  let errors = 0;
  for (const input of inputs) {
    if (input.error) {
      errors++;
      continue;
    }
    if (input.agree) agreed++;
    max = Math.max(max, input.diff);
    sum += input.diff * 3;
    observe(ratios, input.ratio);
  }
  const ran = inputs.length - errors;
  return {
    version,
    runs: ran,
    skipped: 1,
    errors,
    rows: ran,
    agreed,
    overlap: agreed,
    elements: ran * 3,
    maxAbsDiff: max,
    absDiffSum: sum,
    latencyRatio: toWire(ratios) as Summary['latencyRatio'],
  };
}

const gates = (over: Partial<ShadowGates> = {}): ShadowGates => ({ minRuns: 50, maxErrorRate: 0, ...over });

describe('shadow gates', () => {
  it('pools agreement, differences and latency over devices and windows, and matches an independent count', () => {
    const random = splitmix(7);
    const perDevice = new Map<string, { agree: boolean; diff: number; ratio: number }[]>();
    const windows: { deviceId: string; shadow: Summary }[] = [];
    for (const [deviceId, agreeRate] of [
      ['a', 0.95],
      ['b', 0.7],
      ['c', 0.9],
    ] as const) {
      for (let w = 0; w < 3; w++) {
        const inputs = Array.from({ length: 40 }, () => ({
          agree: random() < agreeRate,
          diff: random() * 0.2,
          ratio: 0.8 + random() * 0.8,
        }));
        perDevice.set(deviceId, [...(perDevice.get(deviceId) ?? []), ...inputs]);
        windows.push({ deviceId, shadow: summary('2.0.0', inputs) });
      }
    }
    // Another candidate's windows (an earlier shadow) count for nothing.
    windows.push({ deviceId: 'a', shadow: summary('1.9.0', [{ agree: false, diff: 9, ratio: 50 }]) });
    const all = [...perDevice.values()].flat();
    const readings = sumShadow('2.0.0', windows);
    expect(readings.devices).toBe(3);
    expect(readings.runs).toBe(360);
    expect(readings.skipped).toBe(9);
    expect(readings.pooledAgreement).toBeCloseTo(all.filter((i) => i.agree).length / all.length, 12);
    const shares = [...perDevice.values()].map((inputs) => inputs.filter((i) => i.agree).length / inputs.length).sort((x, y) => x - y);
    expect(readings.medianDeviceAgreement).toBeCloseTo(shares[1] as number, 12);
    expect(readings.agreement).toBe(Math.min(readings.pooledAgreement as number, readings.medianDeviceAgreement as number));
    expect(readings.topKOverlap).toBeCloseTo(readings.pooledAgreement as number, 12);
    expect(readings.maxAbsDiff).toBe(Math.max(...all.map((i) => i.diff)));
    expect(readings.meanAbsDiff).toBeCloseTo(all.reduce((s, i) => s + i.diff, 0) / all.length, 12);
    const sorted = all.map((i) => i.ratio).sort((x, y) => x - y);
    // The merged sketch's median within its rank error of the exact one.
    const rank = sorted.findIndex((r) => r >= (readings.latencyRatio?.p50 ?? 0)) / sorted.length;
    expect(Math.abs(rank - 0.5)).toBeLessThan(0.05);
    const b = perDevice.get('b') ?? [];
    expect(readings.worstDevice).toEqual({ id: 'b', agreement: b.filter((i) => i.agree).length / b.length, rows: b.length });
  });

  it('waits for enough compared inputs and devices, then passes or trips with the gate and its numbers', () => {
    const agreeing = Array.from({ length: 30 }, (_, i) => ({ agree: i !== 0, diff: 0.01, ratio: 1.2 }));
    const one = sumShadow('2.0.0', [{ deviceId: 'a', shadow: summary('2.0.0', agreeing) }]);
    expect(judgeShadow(gates({ minAgreement: 0.9 }), one, 1, 0)).toMatchObject({ verdict: 'wait', needed: { runs: 50, devices: 1 } });
    const two = sumShadow('2.0.0', [
      { deviceId: 'a', shadow: summary('2.0.0', agreeing) },
      { deviceId: 'b', shadow: summary('2.0.0', agreeing) },
    ]);
    expect(judgeShadow(gates({ minAgreement: 0.9 }), two, 3, 0).verdict).toBe('wait');
    expect(judgeShadow(gates({ minAgreement: 0.9, maxLatencyRatio: 1.5 }), two, 2, 0).verdict).toBe('pass');
    expect(judgeShadow(gates({ minAgreement: 0.97 }), two, 2, 0)).toMatchObject({
      verdict: 'trip',
      reason: { gate: 'minShadowAgreement', agreement: 29 / 30, rows: 60, limit: 0.97, stage: 0, devicesReporting: 2, runs: 60 },
    });
    expect(judgeShadow(gates({ maxLatencyRatio: 1.1 }), two, 2, 0)).toMatchObject({
      verdict: 'trip',
      reason: { gate: 'maxShadowLatencyRatio', limit: 1.1 },
    });
  });

  it('is not carried by one device: a report of a million agreeing rows does not lift two disagreeing devices over the gate', () => {
    const disagreeing = Array.from({ length: 40 }, (_, i) => ({ agree: i % 2 === 0, diff: 0.3, ratio: 1 }));
    const forged: Summary = {
      ...summary('2.0.0', Array(40).fill({ agree: true, diff: 0, ratio: 1 })),
      rows: 1_000_000,
      agreed: 1_000_000,
      overlap: 1_000_000,
    };
    const readings = sumShadow('2.0.0', [
      { deviceId: 'a', shadow: summary('2.0.0', disagreeing) },
      { deviceId: 'b', shadow: summary('2.0.0', disagreeing) },
      { deviceId: 'liar', shadow: forged },
    ]);
    expect(readings.pooledAgreement).toBeGreaterThan(0.99);
    expect(readings.medianDeviceAgreement).toBe(0.5);
    expect(judgeShadow(gates({ minAgreement: 0.9 }), readings, 3, 0)).toMatchObject({
      verdict: 'trip',
      reason: { gate: 'minShadowAgreement', agreement: 0.5, medianDeviceAgreement: 0.5 },
    });
  });

  it('trips on shadow errors before the minimum of runs, and says when agreement cannot be measured', () => {
    const failing = sumShadow('2.0.0', [
      {
        deviceId: 'a',
        shadow: summary('2.0.0', [{ agree: true, diff: 0, ratio: 1, error: true }, ...Array(5).fill({ agree: true, diff: 0, ratio: 1 })]),
      },
    ]);
    expect(judgeShadow(gates(), failing, 1, 0)).toMatchObject({
      verdict: 'trip',
      reason: { gate: 'maxShadowErrorRate', errors: 1, errorRate: 1 / 6, limit: 0 },
    });
    expect(judgeShadow(gates({ maxErrorRate: 0.2 }), failing, 1, 0).verdict).toBe('wait');
    const regression: Summary = {
      ...summary('2.0.0', Array(60).fill({ agree: true, diff: 0.1, ratio: 1 })),
      rows: 0,
      agreed: 0,
      overlap: 0,
    };
    const readings = sumShadow('2.0.0', [{ deviceId: 'a', shadow: regression }]);
    expect(readings.agreement).toBeNull();
    expect(judgeShadow(gates({ minAgreement: 0.9 }), readings, 1, 0)).toMatchObject({
      verdict: 'trip',
      reason: { gate: 'minShadowAgreement', agreement: null },
    });
    expect(judgeShadow(gates(), readings, 1, 0).verdict).toBe('pass');
  });
});
