/**
 * Restore keeps the execution provider chosen at install while the device stays the same, and
 * chooses again, durably, when it changed. Real onnxruntime-web sessions and a real store on disk;
 * the "providers" are WASM sessions under other names, the slow one spinning 3 ms a run (60x the
 * model's own time: which one wins never depends on timer noise).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionProvider } from '@edgefleet/protocol';
import { goldenVector, MLP_INPUTS, MLP_OUTPUTS, manifestFor, mlpModel, seededValues } from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { describe, expect, it } from 'vitest';
import type { Engine } from '../engine/types.ts';
import { createWasmEngine } from '../node.ts';
import { createFileModelStore } from '../store/fs-store.ts';
import { createRuntime } from './index.ts';
import type { RuntimeEvents } from './types.ts';

const keys = createTestKeys(Date.now() - 60_000);
const wasm = createWasmEngine(1);
const model = mlpModel(3);
const input = seededValues(8, 17);
const features = { dtype: 'float32' as const, shape: [2, 4], data: input };
const manifest = manifestFor({
  name: 'mlp',
  version: '1.0.0',
  bytes: model.bytes,
  inputs: MLP_INPUTS,
  outputs: MLP_OUTPUTS,
  key: keys.manifest,
  executionProviders: ['cpu', 'wasm'],
  vectors: [
    goldenVector(
      { features: { dtype: 'float32', shape: [2, 4], data: input } },
      { scores: { dtype: 'float32', shape: [2, 3], data: model.reference(input) } },
    ),
  ],
});

/** An engine offering one provider over real WASM sessions; `spinMs` of busy work per run. */
function provider(ep: ExecutionProvider, spinMs: number, created: ExecutionProvider[]): Engine {
  return {
    name: `engine-${ep}`,
    probe: async () => [{ executionProvider: ep, available: true }],
    async createSession(bytes) {
      created.push(ep);
      const inner = await wasm.createSession(bytes, 'wasm');
      return {
        ...inner,
        executionProvider: ep,
        run(feeds) {
          const end = performance.now() + spinMs;
          while (performance.now() < end) {
            // the provider's cost
          }
          return inner.run(feeds);
        },
      };
    },
  };
}

async function open(dir: string, engines: (created: ExecutionProvider[]) => Engine[]) {
  const created: ExecutionProvider[] = [];
  const events: { [K in keyof RuntimeEvents]?: RuntimeEvents[K][] } = {};
  const record =
    <K extends keyof RuntimeEvents>(name: K) =>
    (payload: RuntimeEvents[K]) => {
      const seen = (events[name] ?? []) as RuntimeEvents[K][];
      seen.push(payload);
      events[name] = seen as (typeof events)[K];
    };
  const runtime = await createRuntime({
    store: await createFileModelStore({ dir }),
    engines: engines(created),
    trust: keys.trust,
    latencyProbeRuns: 0,
    listeners: { restored: record('restored'), 'acceptance-passed': record('acceptance-passed'), activated: record('activated') },
  });
  return { runtime, created, events };
}

describe('restore and the execution-provider choice', () => {
  it('reuses the choice while the device is unchanged, and re-decides (durably) when it changed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-restore-'));
    const slowWasmOnly = (created: ExecutionProvider[]) => [provider('wasm', 3, created)];
    const fastCpuAdded = (created: ExecutionProvider[]) => [provider('cpu', 0, created), provider('wasm', 3, created)];

    const first = await open(dir, slowWasmOnly);
    await first.runtime.install(manifest, model.bytes);
    expect(first.events.activated?.[0]).toMatchObject({
      executionProvider: 'wasm',
      providers: [{ executionProvider: 'wasm', engine: 'engine-wasm', passed: true }],
    });
    expect(first.runtime.models()[0]?.active?.providers).toEqual(first.events.activated?.[0]?.providers);
    await first.runtime.close();

    // Same device: straight to wasm, one session, no acceptance run, no new measurement.
    const same = await open(dir, slowWasmOnly);
    expect(same.events.restored).toEqual([{ model: { name: 'mlp', version: '1.0.0' }, executionProvider: 'wasm', variant: 'reference' }]);
    expect(same.created).toEqual(['wasm']);
    expect(same.events['acceptance-passed']).toBeUndefined();
    await same.runtime.close();

    // A faster provider appeared: chosen afresh, measured, and kept in the record.
    const changed = await open(dir, fastCpuAdded);
    const [restored] = changed.events.restored ?? [];
    expect(restored?.executionProvider).toBe('cpu');
    expect(restored?.providers?.map((p) => [p.executionProvider, p.passed, typeof p.p50Ms])).toEqual([
      ['cpu', true, 'number'],
      ['wasm', true, 'number'],
    ]);
    expect(changed.runtime.models()[0]?.active).toMatchObject({ executionProvider: 'cpu', engine: 'engine-cpu' });
    expect((await changed.runtime.run('mlp', { features })).scores?.shape).toEqual([2, 3]);
    await changed.runtime.close();

    // And the next start goes straight to the new choice.
    const after = await open(dir, fastCpuAdded);
    expect(after.events.restored).toEqual([{ model: { name: 'mlp', version: '1.0.0' }, executionProvider: 'cpu', variant: 'reference' }]);
    expect(after.created).toEqual(['cpu']);
    await after.runtime.close();
  });
});
