/**
 * Variants end to end (issue 17, part 2): a version registered with an int8 variant the server
 * quantized, sent to real devices over MQTT. A device that can run it serves it (and downloads
 * nothing else); a device whose budget it exceeds serves the reference; each reports which, and
 * the fleet summary counts them.
 */
import { encodeTensor } from '@edgefleet/protocol';
import { heavyMlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, type FleetDevice, startFleet, until } from './helpers/fleet.ts';

const model = heavyMlpModel(64, 2, 3);
const input = seededValues(8, 2026, 2);
let fleet: Fleet;
let registered: { manifest: { payload: { variants: { name: string; size: number }[]; artifact: { size: number } } } };
const devices: FleetDevice[] = [];

beforeAll(async () => {
  fleet = await startFleet();
  registered = (await fleet.register('wide', '1.0.0', model.bytes, {
    sampleInputs: [[encodeTensor('features', 'float32', [2, 4], input)]],
    quantize: 'int8',
  })) as typeof registered;
  const int8 = registered.manifest.payload.variants[0];
  devices.push(await fleet.startDevice('var-0'));
  // A budget just below the int8 build's size: this device passes over the variant.
  devices.push(await fleet.startDevice('var-1', { variants: { maxBytes: (int8?.size ?? 0) - 1 } }));
}, 90_000);

afterAll(async () => {
  await fleet?.close();
});

describe('variants on a live fleet', () => {
  it('serves the int8 build where it fits, the reference elsewhere, and the fleet summary says which', async () => {
    const [int8] = registered.manifest.payload.variants;
    expect(int8?.size).toBeLessThan(registered.manifest.payload.artifact.size * 0.5);
    for (const device of devices) await fleet.api('PUT', `/v1/devices/${device.id}/desired/wide`, { version: '1.0.0' });
    await until(() => devices.every((d) => d.activeVersion('wide') === '1.0.0'), 'both devices on 1.0.0');
    const [small, tight] = devices as [FleetDevice, FleetDevice];
    expect(small.runtime.models()[0]?.active?.variant).toBe('int8');
    expect(tight.runtime.models()[0]?.active?.variant).toBe('reference');

    // Both answer as the model does, the int8 build within its quantization error.
    const reference = model.reference(input);
    const range = Math.max(...reference.map(Math.abs));
    for (const device of devices) {
      const scores = (await device.runtime.run('wide', { features: { dtype: 'float32', shape: [2, 4], data: input } })).scores
        ?.data as Float32Array;
      for (const [i, value] of scores.entries()) expect(Math.abs(value - (reference[i] ?? 0))).toBeLessThan(0.05 * range);
    }

    // The server hears it from the devices: reported states, the activation events, the summary.
    let versions: { version: string; variants: { variant: string; devices: number }[] }[] = [];
    await until(async () => {
      const summary = await fleet.api<{ models: { name: string; versions: typeof versions }[] }>('GET', '/v1/fleet/summary');
      versions = summary.models.find((m) => m.name === 'wide')?.versions ?? [];
      return versions[0]?.variants.reduce((sum, v) => sum + v.devices, 0) === 2;
    }, 'the summary to count both devices');
    expect(versions[0]?.variants).toEqual([
      { variant: 'int8', devices: 1 },
      { variant: 'reference', devices: 1 },
    ]);
    const device = await fleet.api<{ reported: { models: { active?: { variant?: string } }[] } }>('GET', '/v1/devices/var-0');
    expect(device.reported.models[0]?.active?.variant).toBe('int8');
    const history = await fleet.api<{ events: { kind: string; variant?: string }[] }>('GET', '/v1/devices/var-0/history?kind=activated');
    expect(history.events.find((e) => e.kind === 'activated')?.variant).toBe('int8');
  });
});
