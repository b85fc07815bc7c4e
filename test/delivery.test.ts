/**
 * Delivery whatever the models carry (THREATS 19): golden vectors of realistic size travel as a
 * verified file, never inside the manifest, so every desired-state document stays small and a
 * device keeps taking updates of any model.
 */
import { desiredEntryBytes, encodeTensor, PROTOCOL_DEFAULTS, type SignedDesiredState } from '@edgefleet/protocol';
import { mlpModel, PADDLE_OCR_REC_PATH, readModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, startFleet, until } from './helpers/fleet.ts';

let fleet: Fleet;
beforeAll(async () => {
  fleet = await startFleet();
});
afterAll(async () => {
  await fleet?.close();
});

/** A line of "text" for the recognizer: one 3×48×320 image, 184 KB of float32. */
const textLine = encodeTensor('x', 'float32', [1, 3, 48, 320], seededValues(3 * 48 * 320, 11, 0.5));

describe('delivery of models with large acceptance data', () => {
  it('rolls out PaddleOCR v4 recognizer registered with a real sample image; documents stay small and the device keeps taking updates', async () => {
    const registered = await fleet.register('ocr-rec', '4.0.0', readModel(PADDLE_OCR_REC_PATH), { sampleInputs: [[textLine]] });
    const manifest = (registered as { manifest: { payload: Record<string, never> } }).manifest;
    // The image and its 6625-class answer live in a file the signed manifest lists by hash.
    expect(manifest.payload).toMatchObject({
      acceptance: { vectors: [], vectorsFile: 'golden-vectors.json' },
      files: [{ name: 'golden-vectors.json', role: 'golden-vectors', mediaType: 'application/json' }],
    });
    expect(JSON.stringify(manifest).length).toBeLessThan(4096);

    const device = await fleet.startDevice('reader-1', { tags: ['site=ocr'] });
    const rollout = await fleet.api('POST', '/v1/rollouts', {
      model: 'ocr-rec',
      version: '4.0.0',
      selector: { tags: ['site=ocr'] },
      stages: [{ percent: 100 }],
    });
    await until(
      async () => (await fleet.api('GET', `/v1/rollouts/${rollout.id}`)).state === 'completed',
      'the rollout to complete',
      60_000,
    );
    expect(device.activeVersion('ocr-rec')).toBe('4.0.0');
    // It passed its acceptance test on the device, reading the file.
    const outputs = await device.runtime.run('ocr-rec', {
      x: { dtype: 'float32', shape: [1, 3, 48, 320], data: seededValues(3 * 48 * 320, 11, 0.5) },
    });
    expect(outputs['softmax_11.tmp_0']?.shape).toEqual([1, 40, 6625]);

    // A second model with golden vectors of its own: the device takes it too, and its document
    // holds both entries, each far under the per-entry bound.
    const mlp = mlpModel(3);
    const samples = [0, 1].map((i) => [encodeTensor('features', 'float32', [2, 4], seededValues(8, 20 + i))]);
    await fleet.register('classifier', '1.0.0', mlp.bytes, { sampleInputs: samples });
    await fleet.api('PUT', `/v1/devices/${device.id}/desired/classifier`, { version: '1.0.0' });
    await until(() => device.activeVersion('classifier') === '1.0.0', 'the classifier to activate');
    const document = (await fleet.api('GET', `/v1/devices/${device.id}/desired`)) as SignedDesiredState;
    expect(document.payload.models.map((m) => m.manifest.payload.name).sort()).toEqual(['classifier', 'ocr-rec']);
    for (const entry of document.payload.models)
      expect(desiredEntryBytes(entry)).toBeLessThanOrEqual(PROTOCOL_DEFAULTS.maxDesiredEntryBytes);
    expect(JSON.stringify(document).length).toBeLessThan(16 * 1024);
    await device.stop();
  }, 120_000);
});
