import { createDesiredState, signDesiredState, verifyDesiredState } from '@edgefleet/protocol';
import type { ModelInfo } from '@edgefleet/runtime/core';
import { MLP_INPUTS, MLP_OUTPUTS, manifestFor, mlpModel } from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { describe, expect, it } from 'vitest';
import { planReconcile, reportedState } from './reconcile.ts';

const keys = createTestKeys(Date.now() - 60_000);
const release = (name: string, version: string, seed: number) =>
  manifestFor({
    name,
    version,
    bytes: mlpModel(seed).bytes,
    inputs: MLP_INPUTS,
    outputs: MLP_OUTPUTS,
    key: keys.manifest,
    executionProviders: ['wasm'],
  });
const a1 = release('a', '1.0.0', 1);
const b2 = release('b', '2.0.0', 2);

function desired(
  sequence: number,
  models: { manifest: typeof a1; rolloutId?: string; shadow?: { manifest: typeof a1; rate: number } }[],
  remove: string[] = [],
  rollback = false,
) {
  const document = signDesiredState(createDesiredState({ deviceId: 'dev-1', sequence, models, remove, rollback }), [keys.desiredState]);
  return verifyDesiredState(document, keys.trust, { deviceId: 'dev-1' });
}

const running = (name: string, version: string, sha256: string): ModelInfo => ({
  name,
  state: 'active',
  active: {
    version,
    sha256,
    executionProvider: 'wasm',
    variant: 'reference',
    engine: 'onnxruntime-web',
    activatedAt: '2026-11-28T00:00:00.000Z',
  },
});

describe('reconcile plan', () => {
  it('installs what differs by version or by bytes, skips what runs exactly, matches rollouts by name', () => {
    const plan = planReconcile(
      desired(5, [{ manifest: b2, rolloutId: 'ro-b' }, { manifest: a1 }]),
      [running('a', '1.0.0', a1.payload.artifact.sha256), running('b', '2.0.0', 'f'.repeat(64))],
      4,
    );
    expect(plan.stale).toBe(false);
    expect(plan.installs.map((i) => [i.manifest.name, i.rolloutId])).toEqual([['b', 'ro-b']]);
    expect(plan.installs[0]?.signed.payload).toEqual(b2.payload);
    expect([...plan.rollouts]).toEqual([['b', 'ro-b']]);
  });

  it('is stale at or below the applied sequence', () => {
    expect(planReconcile(desired(3, [{ manifest: a1 }]), [], 3).stale).toBe(true);
    expect(planReconcile(desired(4, [{ manifest: a1 }]), [], 3).stale).toBe(false);
  });

  it('removes only models that are installed, naming the version they ran', () => {
    const plan = planReconcile(desired(2, [], ['a', 'ghost']), [running('a', '1.0.0', a1.payload.artifact.sha256)], 1);
    expect(plan.removes).toEqual([{ name: 'a', version: '1.0.0' }]);
    expect(plan.installs).toEqual([]);
  });

  it('runs a shadow candidate the document asks for, once, and ends one it no longer lists', () => {
    const a2 = release('a', '2.0.0', 3);
    const asked = desired(6, [{ manifest: a1, rolloutId: 'ro-a', shadow: { manifest: a2, rate: 0.2 } }]);
    const idle = running('a', '1.0.0', a1.payload.artifact.sha256);
    const plan = planReconcile(asked, [idle], 5);
    expect(plan.installs).toEqual([]);
    expect(plan.shadows.map((p) => [p.manifest.name, p.manifest.version, p.rate, p.rolloutId])).toEqual([['a', '2.0.0', 0.2, 'ro-a']]);
    expect(plan.shadows[0]?.signed.payload).toEqual(a2.payload);
    // Already running in shadow at that rate: nothing to do; at another rate: again.
    const shadowing = { ...idle, shadow: { version: '2.0.0', variant: 'reference', executionProvider: 'wasm' as const, rate: 0.2 } };
    expect(planReconcile(asked, [shadowing], 5).shadows).toEqual([]);
    expect(planReconcile(asked, [{ ...shadowing, shadow: { ...shadowing.shadow, rate: 0.5 } }], 5).shadows).toHaveLength(1);
    // The next document has no shadow: it ends.
    expect(planReconcile(desired(7, [{ manifest: a1 }]), [shadowing], 6).unshadows).toEqual(['a']);
    // A document that shadows a model with itself, or with another model, is refused as inconsistent.
    expect(() => desired(8, [{ manifest: a1, shadow: { manifest: a1, rate: 0.1 } }])).toThrow(/with itself/);
    expect(() => desired(8, [{ manifest: a1, shadow: { manifest: b2, rate: 0.1 } }])).toThrow(/with a manifest of "b"/);
    expect(
      reportedState({
        deviceId: 'dev-1',
        bootId: 'b'.repeat(16),
        at: Date.now(),
        appliedSequence: 6,
        agent: { version: '0.1.0', platform: 'node' },
        models: [shadowing],
      }).models[0]?.shadow,
    ).toEqual({ version: '2.0.0', variant: 'reference', executionProvider: 'wasm', rate: 0.2 });
  });

  it('carries the rollback flag of the document', () => {
    expect(planReconcile(desired(2, [{ manifest: a1 }], [], true), [], 1).rollback).toBe(true);
  });
});

describe('reported state', () => {
  it('reports each model, its capabilities, and the provider verdicts without their reasons', () => {
    const model: ModelInfo = {
      ...running('a', '1.0.0', a1.payload.artifact.sha256),
      active: {
        ...(running('a', '1.0.0', a1.payload.artifact.sha256).active as NonNullable<ModelInfo['active']>),
        providers: [
          { executionProvider: 'webgpu', engine: 'onnxruntime-web', passed: true, p50Ms: 20, fallbackAdapter: true, reason: 'slower' },
          { executionProvider: 'wasm', engine: 'onnxruntime-web', passed: true, p50Ms: 1 },
        ],
      },
      lastError: { code: 'EF_DOWNLOAD_FAILED', message: 'x'.repeat(5000) },
    };
    const reported = reportedState({
      deviceId: 'dev-1',
      bootId: 'b',
      at: 0,
      appliedSequence: 7,
      agent: { version: '0.1.0', platform: 'node' },
      models: [model],
    });
    expect(reported.capabilities.executionProviders).toEqual(['wasm']);
    expect(reported.models[0]?.active?.providers).toEqual([
      { executionProvider: 'webgpu', engine: 'onnxruntime-web', passed: true, p50Ms: 20, fallbackAdapter: true },
      { executionProvider: 'wasm', engine: 'onnxruntime-web', passed: true, p50Ms: 1 },
    ]);
    expect(reported.models[0]?.lastError?.message).toHaveLength(2000);
  });
});
