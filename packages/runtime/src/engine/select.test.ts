/**
 * Execution-provider choice on real onnxruntime-web sessions (an MLP the tests build), each
 * provider a real WASM session under another name whose runs cost a given time on a virtual clock:
 * the measurement reads that clock, so which provider wins is exact, never a matter of timer noise.
 */
import { type ExecutionProvider, type ManifestPayload, type ProviderMeasurement, verifyManifest } from '@edgefleet/protocol';
import { goldenVector, MLP_INPUTS, MLP_OUTPUTS, manifestFor, mlpModel, seededValues } from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { describe, expect, it } from 'vitest';
import { RUNTIME_DEFAULTS } from '../defaults.ts';
import { createWasmEngine } from '../node.ts';
import type { RuntimeEvents } from '../runtime/types.ts';
import { createProviderSelector, type Provider } from './select.ts';
import type { Engine, EngineSession } from './types.ts';

const keys = createTestKeys(Date.now() - 60_000);
const wasm = createWasmEngine(1);
const model = mlpModel(11);
const input = seededValues(8, 5);

function manifest(executionProviders: ExecutionProvider[], withVectors = true): ManifestPayload {
  const signed = manifestFor({
    name: 'mlp',
    version: '1.0.0',
    bytes: model.bytes,
    inputs: MLP_INPUTS,
    outputs: MLP_OUTPUTS,
    key: keys.manifest,
    executionProviders,
    ...(withVectors
      ? {
          vectors: [
            goldenVector(
              { features: { dtype: 'float32', shape: [2, 4], data: input } },
              { scores: { dtype: 'float32', shape: [2, 3], data: model.reference(input) } },
            ),
          ],
        }
      : {}),
  });
  return verifyManifest(signed, keys.trust);
}

interface Spec {
  readonly ep: ExecutionProvider;
  /** Virtual milliseconds per run (or per run by its index, from 0). */
  readonly costMs: number | ((run: number) => number);
  readonly available?: boolean;
  readonly fallbackAdapter?: boolean;
  /** Answers with other numbers (fails the acceptance test). */
  readonly wrong?: boolean;
}

/** Providers whose sessions are real WASM sessions, each run advancing the virtual clock by its cost. */
function fleet(specs: readonly Spec[]) {
  const clock = { now: 0 };
  const sessions: ExecutionProvider[] = [];
  const runs: Record<string, number> = {};
  const providers: Provider[] = specs.map((spec) => {
    const engine: Engine = {
      name: `engine-${spec.ep}`,
      probe: async () => [],
      async createSession(bytes, ep): Promise<EngineSession> {
        sessions.push(ep);
        const inner = await wasm.createSession(bytes, 'wasm');
        return {
          ...inner,
          executionProvider: ep,
          async run(feeds) {
            clock.now += typeof spec.costMs === 'number' ? spec.costMs : spec.costMs(runs[ep] ?? 0);
            runs[ep] = (runs[ep] ?? 0) + 1;
            const outputs = await inner.run(feeds);
            if (!spec.wrong) return outputs;
            const scores = outputs.scores as { data: Float32Array };
            return { ...outputs, scores: { ...outputs.scores, data: scores.data.map((v) => v + 1) } } as typeof outputs;
          },
          release: () => inner.release(),
        };
      },
    };
    return {
      engine,
      availability: {
        executionProvider: spec.ep,
        available: spec.available ?? true,
        ...(spec.available === false ? { reason: `no ${spec.ep} here` } : {}),
        ...(spec.fallbackAdapter ? { fallbackAdapter: true } : {}),
      },
    };
  });
  const events: { [K in keyof RuntimeEvents]?: RuntimeEvents[K][] } = {};
  const emitter = {
    emit<K extends keyof RuntimeEvents>(name: K, payload: RuntimeEvents[K]) {
      const seen = (events[name] ?? []) as RuntimeEvents[K][];
      seen.push(payload);
      events[name] = seen as (typeof events)[K];
    },
  };
  return {
    clock,
    sessions,
    runs,
    events,
    selector: (policy: Partial<typeof RUNTIME_DEFAULTS.providerChoice> = {}) =>
      createProviderSelector(providers, { ...RUNTIME_DEFAULTS.providerChoice, ...policy }, emitter, () => clock.now),
  };
}

const vectorsOf = (m: ManifestPayload) => async () => m.acceptance?.vectors ?? [];
const verdict = (providers: readonly ProviderMeasurement[], ep: ExecutionProvider) => providers.find((p) => p.executionProvider === ep);

describe('execution-provider choice', () => {
  it('serves on the fastest that passes when it beats the preferred one by the margin, and says so', async () => {
    const f = fleet([
      { ep: 'webgpu', costMs: 40 },
      { ep: 'wasm', costMs: 2 },
    ]);
    const m = manifest(['webgpu', 'wasm']);
    const chosen = await f.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(chosen.executionProvider).toBe('wasm');
    expect(verdict(chosen.providers, 'webgpu')).toMatchObject({
      passed: true,
      p50Ms: 40,
      reason: expect.stringMatching(/measured p50 40 ms against 2 ms on wasm/),
    });
    expect(verdict(chosen.providers, 'wasm')).toMatchObject({ passed: true, p50Ms: 2 });
    expect(f.events['execution-provider-fallback']).toEqual([expect.objectContaining({ from: 'webgpu', to: 'wasm' })]);
    // Rounds stop early once the slow one is known to be 10x slower: 3 timed runs of it, 10 of the fast one.
    expect(f.runs).toMatchObject({ webgpu: 1 + 3, wasm: 1 + 10 });
    expect(await chosen.live.run({ features: { dtype: 'float32', shape: [2, 4], data: input } })).toHaveProperty('scores');
    await chosen.live.retire();
  });

  it('keeps the device preference within the margin (a near tie is not a reason to move)', async () => {
    const f = fleet([
      { ep: 'webgpu', costMs: 10 },
      { ep: 'wasm', costMs: 9 },
    ]);
    const m = manifest(['webgpu', 'wasm']);
    const chosen = await f.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(chosen.executionProvider).toBe('webgpu');
    expect(chosen.providers.map((p) => p.p50Ms)).toEqual([10, 9]);
    expect(f.events['execution-provider-fallback']).toBeUndefined();
    await chosen.live.retire();
  });

  it('does not move off the preferred provider on a burst of load: the challenger must win at its best run too', async () => {
    // The preferred provider is 1 ms a run when the device is quiet and 12 ms while it is busy
    // (every run after the acceptance run but the fourth): a 4 ms challenger wins the median only.
    const f = fleet([
      { ep: 'cpu', costMs: (run) => (run === 0 || run === 4 ? 1 : 12) },
      { ep: 'wasm', costMs: 4 },
    ]);
    const m = manifest(['cpu', 'wasm']);
    const chosen = await f.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(chosen.providers.map((p) => p.p50Ms)).toEqual([12, 4]);
    expect(chosen.executionProvider).toBe('cpu');
    await chosen.live.retire();
  });

  it('measures a software adapter before it may serve, ranking it after every real provider', async () => {
    const slow = fleet([
      { ep: 'webgpu', costMs: 525, fallbackAdapter: true },
      { ep: 'wasm', costMs: 2.5 },
    ]);
    const m = manifest(['webgpu', 'wasm']);
    const chosen = await slow.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(chosen.executionProvider).toBe('wasm');
    expect(verdict(chosen.providers, 'webgpu')).toMatchObject({ passed: true, fallbackAdapter: true, p50Ms: 525 });
    expect(slow.sessions).toEqual(['wasm', 'webgpu']); // the real provider first
    await chosen.live.retire();

    // A software adapter that really is faster serves, once measured.
    const fast = fleet([
      { ep: 'webgpu', costMs: 1, fallbackAdapter: true },
      { ep: 'wasm', costMs: 5 },
    ]);
    const measured = await fast.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(measured.executionProvider).toBe('webgpu');
    await measured.live.retire();

    // Measuring turned off: the software adapter is never even loaded while a real provider passes.
    const unmeasured = fleet([
      { ep: 'webgpu', costMs: 1, fallbackAdapter: true },
      { ep: 'wasm', costMs: 5 },
    ]);
    const first = await unmeasured.selector({ runs: 0 }).choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(first.executionProvider).toBe('wasm');
    expect(unmeasured.sessions).toEqual(['wasm']);
    expect(first.providers).toEqual([{ executionProvider: 'wasm', engine: 'engine-wasm', passed: true }]);
    await first.live.retire();
  });

  it('never measures a provider that fails the acceptance test or is unavailable; reasons are kept', async () => {
    const f = fleet([
      { ep: 'webgpu', costMs: 1, wrong: true },
      { ep: 'cpu', costMs: 1, available: false },
      { ep: 'wasm', costMs: 3 },
    ]);
    const m = manifest(['webgpu', 'cpu', 'wasm']);
    const chosen = await f.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(chosen.executionProvider).toBe('wasm');
    expect(chosen.providers).toEqual([
      expect.objectContaining({ executionProvider: 'webgpu', passed: false, reason: expect.stringMatching(/acceptance test failed/) }),
      expect.objectContaining({ executionProvider: 'cpu', passed: false, reason: 'no cpu here' }),
      { executionProvider: 'wasm', engine: 'engine-wasm', passed: true },
    ]);
    expect(f.runs.webgpu).toBe(1); // the acceptance run only
    expect(f.events['execution-provider-fallback']?.[0]?.reason).toMatch(/webgpu: acceptance test failed.*cpu: no cpu here/);
    await chosen.live.retire();
  });

  it('without golden inputs serves on the first provider that loads, measuring nothing', async () => {
    const f = fleet([
      { ep: 'webgpu', costMs: 50, fallbackAdapter: true },
      { ep: 'wasm', costMs: 50 },
    ]);
    const m = manifest(['webgpu', 'wasm'], false);
    const chosen = await f.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m) });
    expect(chosen.executionProvider).toBe('wasm');
    expect(f.sessions).toEqual(['wasm']);
    expect(f.runs).toEqual({});
    await chosen.live.retire();
  });

  it('goes straight to the provider chosen before, untested, and chooses afresh when it no longer loads', async () => {
    const f = fleet([
      { ep: 'webgpu', costMs: 1 },
      { ep: 'wasm', costMs: 5 },
    ]);
    const m = manifest(['webgpu', 'wasm']);
    const recorded = [{ executionProvider: 'wasm' as const, engine: 'engine-wasm', passed: true, p50Ms: 5 }];
    const again = await f
      .selector()
      .choose(m, model.bytes, { loadVectors: vectorsOf(m), previous: { executionProvider: 'wasm', providers: recorded } });
    expect(again).toMatchObject({ executionProvider: 'wasm', decided: false, providers: recorded });
    expect(f.sessions).toEqual(['wasm']);
    expect(f.runs).toEqual({}); // no acceptance run, no measurement
    await again.live.retire();

    const gone = fleet([
      { ep: 'webgpu', costMs: 1 },
      { ep: 'wasm', costMs: 5, available: false },
    ]);
    const afresh = await gone.selector().choose(m, model.bytes, { loadVectors: vectorsOf(m), previous: { executionProvider: 'wasm' } });
    expect(afresh).toMatchObject({ executionProvider: 'webgpu', decided: true });
    await afresh.live.retire();
  });

  it('fingerprints what the device offers for a manifest: engines, availability, software adapters', () => {
    const a = fleet([
      { ep: 'webgpu', costMs: 1, fallbackAdapter: true },
      { ep: 'wasm', costMs: 1 },
    ]).selector();
    const b = fleet([
      { ep: 'webgpu', costMs: 1 },
      { ep: 'wasm', costMs: 1 },
    ]).selector();
    expect(a.fingerprint(['webgpu', 'wasm'])).toBe('engine-webgpu:webgpu:available:fallback-adapter,engine-wasm:wasm:available');
    expect(a.fingerprint(['webgpu', 'wasm'])).not.toBe(b.fingerprint(['webgpu', 'wasm']));
    expect(a.fingerprint(['wasm'])).toBe(b.fingerprint(['wasm'])); // only what the manifest allows counts
  });
});
