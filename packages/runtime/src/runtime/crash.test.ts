/**
 * Kill -9 at every step of an activation: the device must come back with exactly the old or
 * exactly the new model active (never none, never a mix), serving the right outputs, with no
 * leftover files. Mender checks its client the same way.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MLP_INPUTS, MLP_OUTPUTS, manifestFor, mlpModel, seededValues } from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { describe, expect, it } from 'vitest';
import { createRuntime, createWasmEngine } from '../node.ts';

const keys = createTestKeys(Date.now() - 60_000);
const root = fileURLToPath(new URL('../../../../', import.meta.url));
const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const MLP = {
  inputs: MLP_INPUTS,
  outputs: MLP_OUTPUTS,
};
const v1 = mlpModel(7);
const v2 = mlpModel(8);
const input = seededValues(8, 5);

const STEPS = [
  ['download', 'old'],
  ['verified', 'old'],
  ['downloaded', 'old'],
  ['stored', 'old'],
  ['accepted', 'old'],
  ['activated', 'new'],
  ['confirmed', 'new'],
] as const;

describe('kill -9 during an install', () => {
  it.each(STEPS)('at step "%s" leaves exactly the %s model active', async (step, survivor) => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-crash-'));
    const manifest = (model: typeof v1, version: string) =>
      manifestFor({ name: 'mlp', version, bytes: model.bytes, ...MLP, key: keys.manifest, executionProviders: ['wasm'] });
    const first = await createRuntime({ dir, engines: [createWasmEngine(1)], trust: keys.trust });
    await first.install(manifest(v1, '1.0.0'), v1.bytes);
    await first.close();

    const modelPath = join(dir, '..', `${step}-v2.onnx`);
    await writeFile(modelPath, v2.bytes);
    const plan = join(dir, '..', `${step}-plan.json`);
    await writeFile(plan, JSON.stringify({ dir, keySet: keys.trust.keySet, manifest: manifest(v2, '2.0.0'), modelPath, crashAt: step }));
    const result = spawnSync(process.execPath, ['--conditions=@edgefleet/source', '--import', 'tsx', child, plan], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.signal, result.stderr).toBe('SIGKILL');
    expect(result.stdout).not.toContain('installed');

    const after = await createRuntime({ dir, engines: [createWasmEngine(1)], trust: keys.trust });
    const expected = survivor === 'old' ? { version: '1.0.0', model: v1 } : { version: '2.0.0', model: v2 };
    expect(after.models()).toMatchObject([{ name: 'mlp', state: 'active', active: { version: expected.version } }]);
    const outputs = await after.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data: input } });
    const reference = expected.model.reference(input);
    expect(outputs.scores?.data).toHaveLength(6);
    for (const [i, value] of ((outputs.scores?.data as Float32Array | undefined) ?? new Float32Array()).entries())
      expect(Math.abs(value - (reference[i] ?? 0))).toBeLessThan(1e-5);
    await after.close(); // lets the start-up garbage collection finish
    // Nothing half-written survives: no temp files, and only artifacts the record points at.
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect((await readdir(join(dir, 'artifacts'))).length).toBe(survivor === 'old' ? 1 : 2);
  });
});
