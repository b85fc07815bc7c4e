import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TensorSpec } from '@edgefleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EvaluationFormat, MAX_ROW_BYTES, openEvaluationDataset, type SampleBatch } from './dataset.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const FEATURES: TensorSpec[] = [{ name: 'features', dtype: 'float32', shape: ['batch', 4] }];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgefleet-dataset-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readAll(path: string, format: EvaluationFormat, inputs: readonly TensorSpec[], batchSize = 16, labelColumn?: string) {
  const dataset = await openEvaluationDataset(path, format, { inputs, scratch: join(dir, 'scratch'), labelColumn });
  const batches: SampleBatch[] = [];
  try {
    for await (const batch of dataset.batches(batchSize)) batches.push(batch);
    expect(dataset.progress()).toBe(1);
  } finally {
    await dataset.close();
  }
  return { dataset, batches };
}

async function file(name: string, text: string | Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('evaluation datasets', () => {
  it.each(['stored.npz', 'compressed.npz'])('reads %s as NumPy wrote it (np.savez / np.savez_compressed), in batches', async (name) => {
    const { dataset, batches } = await readAll(join(FIXTURES, name), 'npz', FEATURES, 16);
    expect(dataset.total).toBe(50);
    expect(batches.map((b) => b.labels.length)).toEqual([16, 16, 16, 2]);
    const values = batches.flatMap((b) => b.inputs.get('features')?.values ?? []);
    expect(values).toHaveLength(200);
    for (let i = 0; i < 50; i++) {
      for (let j = 0; j < 4; j++) expect(values[i * 4 + j]).toBeCloseTo(Math.fround(Math.sin(i * 4 + j)), 6);
    }
    expect(batches.flatMap((b) => b.labels)).toEqual(Array.from({ length: 50 }, (_, i) => i % 3));
    expect(batches[0]?.inputs.get('features')?.rowShape).toEqual([4]);
  });

  it('reads image tensors (uint8, four axes) and float64 labels, and ignores arrays no input names', async () => {
    const image: TensorSpec = { name: 'image', dtype: 'uint8', shape: ['n', 1, 3, 3] };
    const { batches } = await readAll(join(FIXTURES, 'images.npz'), 'npz', [image], 4);
    const values = batches.flatMap((b) => b.inputs.get('image')?.values ?? []);
    expect(values).toEqual(Array.from({ length: 54 }, (_, k) => (k * 7) % 256));
    expect(batches.flatMap((b) => b.labels)).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
    expect(batches[0]?.inputs.get('image')?.rowShape).toEqual([1, 3, 3]);
  });

  it('reads float16 arrays and boolean labels', async () => {
    const x: TensorSpec = { name: 'x', dtype: 'float32', shape: ['batch', 1] };
    const { batches } = await readAll(join(FIXTURES, 'half.npz'), 'npz', [x], 8);
    expect(batches[0]?.inputs.get('x')?.values).toEqual([-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5]);
    expect(batches[0]?.labels).toEqual([1, 0, 1, 0, 1, 0, 1, 0]);
  });

  it('refuses an .npz whose arrays do not fit the model, naming what is wrong', async () => {
    const wide: TensorSpec[] = [{ name: 'features', dtype: 'float32', shape: ['batch', 5] }];
    await expect(
      openEvaluationDataset(join(FIXTURES, 'stored.npz'), 'npz', { inputs: wide, scratch: join(dir, 's') }),
    ).rejects.toMatchObject({
      code: 'EF_DATASET_INVALID',
      message: expect.stringMatching(/"features" .*declared \[batch, 5\].*\[4\]/),
    });
    const other: TensorSpec[] = [{ name: 'pixels', dtype: 'float32', shape: [1, 4] }];
    await expect(
      openEvaluationDataset(join(FIXTURES, 'stored.npz'), 'npz', { inputs: other, scratch: join(dir, 's') }),
    ).rejects.toMatchObject({
      code: 'EF_DATASET_INVALID',
      message: expect.stringContaining('no array named after input "pixels" (arrays: features, label)'),
    });
    await expect(
      openEvaluationDataset(join(FIXTURES, 'stored.npz'), 'npz', { inputs: FEATURES, scratch: join(dir, 's'), labelColumn: 'y' }),
    ).rejects.toMatchObject({ code: 'EF_DATASET_INVALID', message: expect.stringContaining('no "y" array') });
  });

  it('refuses a cut, corrupted or lying .npz with EF_DATASET_INVALID, never a crash', async () => {
    const stored = await readFile(join(FIXTURES, 'stored.npz'));
    const compressed = await readFile(join(FIXTURES, 'compressed.npz'));
    const cases: Uint8Array[] = [
      stored.subarray(0, stored.length - 30), // the end record cut
      stored.subarray(0, 600), // the data cut
      Buffer.from('not a zip at all'),
      Buffer.concat([Buffer.from(compressed.subarray(0, 100)), Buffer.alloc(400, 0xff), Buffer.from(compressed.subarray(500))]), // garbled deflate
    ];
    for (const [i, bytes] of cases.entries()) {
      const path = await file(`bad-${i}.npz`, bytes);
      const attempt = async () => {
        await readAll(path, 'npz', FEATURES);
      };
      await expect(attempt(), `case ${i}`).rejects.toMatchObject({ code: 'EF_DATASET_INVALID' });
    }
  });

  it('reads CSV: the label anywhere, every other column a feature in file order; batches', async () => {
    const rows = Array.from({ length: 7 }, (_, i) => `${i},${i}.5,cat-${i % 2},${-i},1e-3`);
    const path = await file('data.csv', `a,b,label,c,d\n${rows.join('\n')}\n`);
    const { batches } = await readAll(path, 'csv', FEATURES, 3);
    expect(batches.map((b) => b.labels)).toEqual([['cat-0', 'cat-1', 'cat-0'], ['cat-1', 'cat-0', 'cat-1'], ['cat-0']]);
    expect(batches[1]?.inputs.get('features')?.values.slice(0, 4)).toEqual([3, 3.5, -3, 0.001]);
  });

  it('refuses CSV it cannot use, with the row and the column', async () => {
    const bad = await file('bad.csv', 'a,b,c,d,label\n1,2,3,4,0\n1,2,x,4,1\n');
    await expect(readAll(bad, 'csv', FEATURES)).rejects.toMatchObject({
      code: 'EF_DATASET_INVALID',
      message: expect.stringContaining('CSV row 2, column "c": "x" is not a number'),
      details: { row: 2 },
    });
    const noLabel = await file('nolabel.csv', 'a,b,c,d\n1,2,3,4\n');
    await expect(readAll(noLabel, 'csv', FEATURES)).rejects.toMatchObject({ message: expect.stringContaining('no "label" column') });
    const narrow = await file('narrow.csv', 'a,b,label\n1,2,0\n');
    await expect(readAll(narrow, 'csv', FEATURES)).rejects.toMatchObject({
      message: expect.stringContaining('declared [batch, 4] but a sample is [2]'),
    });
    const ragged = await file('ragged.csv', 'a,b,c,d,label\n1,2,3,4,0\n1,2,0\n');
    await expect(readAll(ragged, 'csv', FEATURES)).rejects.toMatchObject({ code: 'EF_DATASET_INVALID' });
    const two: TensorSpec[] = [...FEATURES, { name: 'mask', dtype: 'float32', shape: [1, 4] }];
    await expect(readAll(noLabel, 'csv', two)).rejects.toMatchObject({
      message: expect.stringContaining('this model has 2 (features, mask)'),
    });
  });

  it('reads JSON lines, tabular or with nested "inputs" per model input', async () => {
    const tabular = await file('t.jsonl', '{"x":1,"y":2,"z":3,"w":4,"label":true}\n\n{"x":5,"y":6,"z":7,"w":8,"label":0}\n');
    const first = await readAll(tabular, 'jsonl', FEATURES);
    expect(first.batches[0]?.labels).toEqual(['1', 0]);
    expect(first.batches[0]?.inputs.get('features')?.values).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const audio: TensorSpec[] = [
      { name: 'wave', dtype: 'float32', shape: [1, 'samples'] },
      { name: 'rate', dtype: 'int64', shape: [1] },
    ];
    const nested = await file(
      'n.jsonl',
      [
        JSON.stringify({ inputs: { wave: [[0.1, 0.2, 0.3]], rate: [16000] }, label: 'speech' }),
        JSON.stringify({ inputs: { wave: [[0.5, 0.6]], rate: [8000] }, label: 'noise' }),
      ].join('\n'),
    );
    const second = await readAll(nested, 'jsonl', audio);
    expect(second.batches[0]?.labels).toEqual(['speech', 'noise']);
    expect(second.batches[0]?.inputs.get('wave')?.values).toEqual([0.1, 0.2, 0.3, 0.5, 0.6]);
    // Rows of different lengths cannot be one batch tensor: the shape says so (empty).
    expect(second.batches[0]?.inputs.get('wave')?.rowShape).toEqual([]);
    const wrong = await file('w.jsonl', JSON.stringify({ inputs: { wave: [[[0.1]]], rate: [1] }, label: 'x' }));
    await expect(readAll(wrong, 'jsonl', audio)).rejects.toMatchObject({ message: expect.stringContaining('JSON line 1: input "wave"') });
    const garbage = await file('g.jsonl', '{"x":1,"y":1,"z":1,"w":1,"label":1}\n{nope\n');
    await expect(readAll(garbage, 'jsonl', FEATURES)).rejects.toMatchObject({
      message: expect.stringContaining('JSON line 2 is not JSON'),
    });
  });

  it('refuses hostile text datasets with EF_DATASET_INVALID: deep nesting, prototype keys, a line without end', async () => {
    const deep = await file('deep.jsonl', `{"label":1,"inputs":{"features":${'['.repeat(5000)}1${']'.repeat(5000)}}}\n`);
    await expect(readAll(deep, 'jsonl', FEATURES)).rejects.toMatchObject({
      code: 'EF_DATASET_INVALID',
      message: expect.stringContaining('nested deeper than 8'),
    });
    const proto = await file('proto.jsonl', '{"__proto__":{"polluted":1},"b":1,"c":1,"d":1,"label":1}\n');
    await expect(readAll(proto, 'jsonl', FEATURES)).rejects.toMatchObject({
      code: 'EF_DATASET_INVALID',
      message: expect.stringContaining('"__proto__": not a finite number'),
    });
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    const endless = await file('endless.jsonl', Buffer.alloc(MAX_ROW_BYTES + 1024 * 1024, 0x31));
    await expect(readAll(endless, 'jsonl', FEATURES)).rejects.toMatchObject({
      code: 'EF_DATASET_INVALID',
      message: expect.stringContaining('longer than'),
    });
    const wide = await file('endless.csv', `a,label\n${'1'.repeat(MAX_ROW_BYTES + 1024)},0\n`);
    await expect(readAll(wide, 'csv', FEATURES)).rejects.toMatchObject({ code: 'EF_DATASET_INVALID' });
  });
});
