/**
 * The install pipeline's own rules, without a store or an engine: is this manifest for this device,
 * and does a rollback document really allow going below the version floor. The pipeline end to
 * end (every step, failures at each, the atomic flip) is tested through the runtime's API in
 * runtime/index.test.ts.
 */
import { EdgefleetError } from '@edgefleet/protocol';
import { createTestKeys, sampleManifest, sampleSignedDesiredState, sampleSignedManifest, TEST_NOW } from '@edgefleet/test-utils/protocol';
import { describe, expect, it } from 'vitest';
import { RUNTIME_VERSION } from '../defaults.ts';
import { checkTarget, rollbackAllowed } from './index.ts';

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof EdgefleetError ? error.code : String(error);
  }
  return undefined;
}

describe('checkTarget', () => {
  const forClasses = (deviceClasses: string[] | undefined, minRuntimeVersion?: string) =>
    sampleManifest({
      runtime: {
        executionProviders: ['wasm'],
        ...(deviceClasses ? { deviceClasses } : {}),
        ...(minRuntimeVersion ? { minRuntimeVersion } : {}),
      },
    });

  it('takes a manifest for any device, or for this device class', () => {
    expect(codeOf(() => checkTarget(forClasses(undefined), undefined))).toBeUndefined();
    expect(codeOf(() => checkTarget(forClasses(['pi-5', 'jetson']), 'jetson'))).toBeUndefined();
  });

  it('refuses a manifest for other classes, and an unclassified device when classes are named', () => {
    expect(codeOf(() => checkTarget(forClasses(['pi-5']), 'jetson'))).toBe('EF_MODEL_TARGET_MISMATCH');
    expect(codeOf(() => checkTarget(forClasses(['pi-5']), undefined))).toBe('EF_MODEL_TARGET_MISMATCH');
  });

  it('refuses a manifest that needs a newer runtime than this one, and takes one that needs this one', () => {
    expect(codeOf(() => checkTarget(forClasses(undefined, RUNTIME_VERSION), undefined))).toBeUndefined();
    expect(codeOf(() => checkTarget(forClasses(undefined, '99.0.0'), undefined))).toBe('EF_MODEL_TARGET_MISMATCH');
  });
});

describe('rollbackAllowed', () => {
  const keys = createTestKeys();
  const device = { trust: keys.trust, deviceId: 'cam-042', now: TEST_NOW };
  const old = sampleSignedManifest(keys, { version: '4.0.0' });

  it('is no rollback without a document', () => {
    expect(rollbackAllowed(old.payload, undefined, device)).toBe(false);
  });

  it('allows a signed rollback document for this device that lists this exact manifest', () => {
    const document = sampleSignedDesiredState(keys, { rollback: true, models: [{ manifest: old, rolloutId: 'ro-9' }] });
    expect(rollbackAllowed(old.payload, document, device)).toBe(true);
  });

  it('does not allow one that is no rollback, or lists other bytes under the same version', () => {
    const plain = sampleSignedDesiredState(keys, { rollback: false, models: [{ manifest: old }] });
    expect(rollbackAllowed(old.payload, plain, device)).toBe(false);
    const other = sampleSignedManifest(keys, { version: '4.0.0', artifact: { ...old.payload.artifact, sha256: 'c'.repeat(64) } });
    const document = sampleSignedDesiredState(keys, { rollback: true, models: [{ manifest: other }] });
    expect(rollbackAllowed(old.payload, document, device)).toBe(false);
  });

  it('refuses a rollback document for another device, with another key, or on a runtime without a device id', () => {
    const document = sampleSignedDesiredState(keys, { rollback: true, models: [{ manifest: old }] });
    expect(codeOf(() => rollbackAllowed(old.payload, document, { ...device, deviceId: 'cam-043' }))).toBe('EF_DESIRED_STATE_WRONG_DEVICE');
    expect(codeOf(() => rollbackAllowed(old.payload, document, { ...device, deviceId: undefined }))).toBe('EF_DESIRED_STATE_WRONG_DEVICE');
    const stranger = createTestKeys();
    const forged = sampleSignedDesiredState(stranger, { rollback: true, models: [{ manifest: old }] });
    expect(codeOf(() => rollbackAllowed(old.payload, forged, device))).toMatch(/^EF_SIGNATURE/);
  });
});
