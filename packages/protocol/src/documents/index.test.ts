import { createTestKeys, sampleManifest, sampleSignedDesiredState, sampleSignedManifest, TEST_NOW } from '@edgefleet/test-utils/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalize } from '../canonical-json/index.ts';
import { fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';
import { addSignature, generateSigningKey, signPayload } from '../signing/index.ts';
import {
  checkVersionFloor,
  createKeySet,
  createTrust,
  desiredEntryBytes,
  revokedKeyIds,
  signKeySet,
  signManifest,
  verifyDesiredState,
  verifyKeySetUpdate,
  verifyManifest,
} from './index.ts';

const keys = createTestKeys();
const now = TEST_NOW + 60_000;
const DAY = 24 * 3600 * 1000;

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    if (!(error instanceof EdgefleetError)) throw error;
    return error.code;
  }
}

/** Flips one bit of a document's JSON text and returns what a receiver would parse, if anything. */
function flipBit(document: unknown, bit: number): unknown {
  const bytes = utf8Encode(JSON.stringify(document));
  bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) ^ (1 << (bit & 7));
  try {
    return JSON.parse(utf8Decode(bytes));
  } catch {
    return undefined;
  }
}

describe('model manifest signatures', () => {
  const signed = sampleSignedManifest(keys);

  it('verifies a manifest signed by the trusted manifest key', () => {
    expect(verifyManifest(signed, keys.trust, { now })).toEqual(signed.payload);
  });

  it('survives a JSON round trip with the members in any order', () => {
    const reordered = JSON.parse(JSON.stringify({ signatures: signed.signatures, payload: signed.payload }));
    expect(verifyManifest(reordered, keys.trust, { now }).version).toBe('5.0.0');
  });

  it('refuses every single-bit change to the document or its signature that changes what it says', () => {
    const bits = utf8Encode(JSON.stringify(signed)).length * 8;
    fc.assert(
      fc.property(fc.nat(bits - 1), (bit) => {
        const tampered = flipBit(signed, bit);
        if (tampered === undefined) return; // no longer JSON: refused before verification
        let accepted: unknown;
        try {
          accepted = verifyManifest(tampered, keys.trust, { now });
        } catch (error) {
          expect(error).toBeInstanceOf(EdgefleetError);
          return;
        }
        // Accepted only if the flip did not change the signed content (e.g. 1e-4 written as 1E-4).
        expect(canonicalize(accepted)).toBe(canonicalize(signed.payload));
        expect(canonicalize(tampered)).toBe(canonicalize(signed));
      }),
      { numRuns: 400 },
    );
  });

  it('refuses any single-bit change to a signature with EF_SIGNATURE_INVALID', () => {
    fc.assert(
      fc.property(fc.nat(64 * 8 - 1), (bit) => {
        const sig = fromBase64Url((signed.signatures[0] as { sig: string }).sig);
        sig[bit >> 3] = (sig[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        const tampered = { ...signed, signatures: [{ keyId: keys.manifest.keyId, sig: toBase64Url(sig) }] };
        expect(codeOf(() => verifyManifest(tampered, keys.trust, { now }))).toBe('EF_SIGNATURE_INVALID');
      }),
      { numRuns: 200 },
    );
  });

  it('refuses any change to the payload, however small, with EF_SIGNATURE_INVALID', () => {
    const tampered = { ...signed, payload: { ...signed.payload, version: '5.0.1' } };
    expect(codeOf(() => verifyManifest(tampered, keys.trust, { now }))).toBe('EF_SIGNATURE_INVALID');
  });

  it('refuses a manifest signed by an unknown key with EF_SIGNATURE_UNKNOWN_KEY', () => {
    const stranger = signManifest(sampleManifest(), [generateSigningKey()]);
    expect(codeOf(() => verifyManifest(stranger, keys.trust, { now }))).toBe('EF_SIGNATURE_UNKNOWN_KEY');
  });

  it('refuses a manifest signed with a key of another role (desired-state) with EF_SIGNATURE_UNKNOWN_KEY', () => {
    const wrongRole = signManifest(sampleManifest(), [keys.desiredState]);
    expect(codeOf(() => verifyManifest(wrongRole, keys.trust, { now }))).toBe('EF_SIGNATURE_UNKNOWN_KEY');
  });

  it('refuses an unsigned manifest with EF_SIGNATURE_MISSING', () => {
    expect(codeOf(() => verifyManifest({ payload: signed.payload, signatures: [] }, keys.trust, { now }))).toBe('EF_SIGNATURE_MISSING');
  });

  it('refuses an expired manifest with EF_DOCUMENT_EXPIRED (freeze attack)', () => {
    expect(codeOf(() => verifyManifest(signed, keys.trust, { now: TEST_NOW + 91 * DAY }))).toBe('EF_DOCUMENT_EXPIRED');
  });

  it('refuses a manifest issued beyond the allowed clock skew with EF_DOCUMENT_NOT_YET_VALID', () => {
    expect(codeOf(() => verifyManifest(signed, keys.trust, { now: TEST_NOW - 10 * 60_000 }))).toBe('EF_DOCUMENT_NOT_YET_VALID');
    expect(codeOf(() => verifyManifest(signed, keys.trust, { now: TEST_NOW - 60_000 }))).toBeUndefined();
  });

  it('refuses a manifest with fewer valid signatures than the threshold with EF_SIGNATURE_THRESHOLD', () => {
    const second = generateSigningKey();
    const trust = createTrust(
      createKeySet({
        version: 1,
        now: TEST_NOW,
        roles: {
          root: { keys: [keys.root] },
          manifest: { keys: [keys.manifest, second], threshold: 2 },
          'desired-state': { keys: [keys.desiredState] },
        },
      }),
    );
    expect(codeOf(() => verifyManifest(signed, trust, { now }))).toBe('EF_SIGNATURE_THRESHOLD');
    // The same key twice is still one key.
    const doubled = { ...signed, signatures: [signed.signatures[0], signed.signatures[0]] };
    expect(codeOf(() => verifyManifest(doubled, trust, { now }))).toBe('EF_SIGNATURE_THRESHOLD');
    expect(verifyManifest(addSignature(signed, second), trust, { now }).name).toBe('silero-vad');
  });

  it('refuses golden vectors that do not fit the declared inputs with EF_DOCUMENT_INCONSISTENT', () => {
    const manifest = sampleManifest();
    const vector = manifest.acceptance?.vectors[0];
    if (!vector) throw new Error('sample has a golden vector');
    const broken = {
      ...manifest,
      acceptance: { tolerance: { absolute: 0, relative: 0 }, vectors: [{ ...vector, inputs: vector.inputs.slice(0, 2) }] },
    };
    expect(codeOf(() => signManifest(broken, [keys.manifest]))).toBe('EF_DOCUMENT_INCONSISTENT');
    // Signed anyway by a careless signer: the device still refuses it.
    const signedBroken = signPayload(broken, [keys.manifest]);
    expect(codeOf(() => verifyManifest(signedBroken, keys.trust, { now }))).toBe('EF_DOCUMENT_INCONSISTENT');
  });

  it('accepts telemetry features that read declared tensors and refuses the ones that cannot work, saying why', () => {
    const manifest = sampleManifest();
    const withFeatures = (features: unknown[]) => ({ ...manifest, telemetry: { features } }) as typeof manifest;
    const good = withFeatures([
      { name: 'loudness', source: 'input', tensor: 'input', kind: 'summary', stat: 'energy' },
      { name: 'speech', source: 'output', tensor: 'output', kind: 'column', index: 0 },
    ]);
    expect(verifyManifest(signManifest(good, [keys.manifest]), keys.trust, { now }).telemetry?.features).toHaveLength(2);
    const refusals: [unknown, RegExp][] = [
      [{ name: 'x', source: 'input', tensor: 'pixels', kind: 'summary', stat: 'mean' }, /does not declare/],
      [{ name: 'x', source: 'input', tensor: 'input', kind: 'column' }, /give its "index"/],
      [{ name: 'x', source: 'input', tensor: 'state', kind: 'column', index: 128 }, /last dimension is 128/],
      [{ name: 'x', source: 'input', tensor: 'input', kind: 'summary' }, /needs a "stat"/],
      [{ name: 'x', source: 'input', tensor: 'input', kind: 'class' }, /source must be "output"/],
    ];
    for (const [feature, message] of refusals) {
      let error: unknown;
      try {
        signManifest(withFeatures([feature]), [keys.manifest]);
      } catch (caught) {
        error = caught;
      }
      expect(error).toMatchObject({ code: 'EF_DOCUMENT_INCONSISTENT', message: expect.stringMatching(message) });
    }
    const twice = { name: 'x', source: 'input', tensor: 'input', kind: 'summary', stat: 'mean' };
    expect(codeOf(() => signManifest(withFeatures([twice, twice]), [keys.manifest]))).toBe('EF_DOCUMENT_INCONSISTENT');
  });
});

describe('desired-state documents', () => {
  const signed = sampleSignedDesiredState(keys);

  it('verifies the document and every manifest in it', () => {
    const verified = verifyDesiredState(signed, keys.trust, { now, deviceId: 'cam-042', lastSequence: 6 });
    expect(verified.payload.sequence).toBe(7);
    expect(verified.manifests.map((m) => `${m.name}@${m.version}`)).toEqual(['silero-vad@5.0.0']);
  });

  it('refuses every single-bit change that changes what it says', () => {
    const bits = utf8Encode(JSON.stringify(signed)).length * 8;
    fc.assert(
      fc.property(fc.nat(bits - 1), (bit) => {
        const tampered = flipBit(signed, bit);
        if (tampered === undefined) return;
        try {
          verifyDesiredState(tampered, keys.trust, { now, deviceId: 'cam-042' });
        } catch (error) {
          expect(error).toBeInstanceOf(EdgefleetError);
          return;
        }
        expect(canonicalize(tampered)).toBe(canonicalize(signed));
      }),
      { numRuns: 400 },
    );
  });

  it('refuses a document addressed to another device', () => {
    expect(codeOf(() => verifyDesiredState(signed, keys.trust, { now, deviceId: 'cam-043' }))).toBe('EF_DESIRED_STATE_WRONG_DEVICE');
  });

  it('refuses a replayed or older sequence', () => {
    expect(codeOf(() => verifyDesiredState(signed, keys.trust, { now, deviceId: 'cam-042', lastSequence: 7 }))).toBe(
      'EF_DESIRED_STATE_REPLAYED',
    );
    expect(codeOf(() => verifyDesiredState(signed, keys.trust, { now, deviceId: 'cam-042', lastSequence: 9 }))).toBe(
      'EF_DESIRED_STATE_REPLAYED',
    );
  });

  it('refuses a document signed with the manifest key (wrong role)', () => {
    const wrongRole = signPayload(signed.payload, [keys.manifest]);
    expect(codeOf(() => verifyDesiredState(wrongRole, keys.trust, { now, deviceId: 'cam-042' }))).toBe('EF_SIGNATURE_UNKNOWN_KEY');
  });

  it('refuses a document whose embedded manifest was signed by an unknown key', () => {
    const rogue = signManifest(sampleManifest({ version: '9.0.0' }), [generateSigningKey()]);
    const document = sampleSignedDesiredState(keys, { models: [{ manifest: rogue }] });
    expect(codeOf(() => verifyDesiredState(document, keys.trust, { now, deviceId: 'cam-042' }))).toBe('EF_SIGNATURE_UNKNOWN_KEY');
  });

  it('refuses a document that installs and removes the same model', () => {
    const payload = { ...signed.payload, remove: ['silero-vad'] };
    const document = signPayload(payload, [keys.desiredState]);
    expect(codeOf(() => verifyDesiredState(document, keys.trust, { now, deviceId: 'cam-042' }))).toBe('EF_DOCUMENT_INCONSISTENT');
  });

  it('refuses an expired document (freeze attack)', () => {
    expect(codeOf(() => verifyDesiredState(signed, keys.trust, { now: TEST_NOW + 31 * DAY, deviceId: 'cam-042' }))).toBe(
      'EF_DOCUMENT_EXPIRED',
    );
  });
});

describe('key rotation', () => {
  const newRoot = generateSigningKey();
  const newManifestKey = generateSigningKey();
  const rotated = createKeySet({
    version: 2,
    now: TEST_NOW,
    roles: { root: { keys: [newRoot] }, manifest: { keys: [newManifestKey] }, 'desired-state': { keys: [keys.desiredState] } },
  });

  it('accepts a rotation signed by the current and the new root keys', () => {
    const next = verifyKeySetUpdate(keys.trust, signKeySet(rotated, [keys.root, newRoot]), { now });
    expect(next.keySet.version).toBe(2);
    expect(revokedKeyIds(keys.trust, next, 'manifest')).toEqual([keys.manifest.keyId]);
  });

  it('refuses a rotation signed only by the old root (a stolen root key cannot rotate alone)', () => {
    expect(codeOf(() => verifyKeySetUpdate(keys.trust, signKeySet(rotated, [keys.root]), { now }))).toBe('EF_SIGNATURE_UNKNOWN_KEY');
  });

  it('refuses a rotation signed only by the new root', () => {
    expect(codeOf(() => verifyKeySetUpdate(keys.trust, signKeySet(rotated, [newRoot]), { now }))).toBe('EF_SIGNATURE_UNKNOWN_KEY');
  });

  it('refuses a key set that is not newer with EF_KEYSET_ROLLBACK', () => {
    const same = createKeySet({
      ...{ version: 1, now: TEST_NOW },
      roles: { root: { keys: [keys.root] }, manifest: { keys: [keys.manifest] }, 'desired-state': { keys: [keys.desiredState] } },
    });
    expect(codeOf(() => verifyKeySetUpdate(keys.trust, signKeySet(same, [keys.root]), { now }))).toBe('EF_KEYSET_ROLLBACK');
  });

  it('refuses manifests signed by a revoked key after rotation, and accepts the new key', () => {
    const next = verifyKeySetUpdate(keys.trust, signKeySet(rotated, [keys.root, newRoot]), { now });
    expect(codeOf(() => verifyManifest(sampleSignedManifest(keys), next, { now }))).toBe('EF_SIGNATURE_UNKNOWN_KEY');
    expect(verifyManifest(signManifest(sampleManifest(), [newManifestKey]), next, { now }).name).toBe('silero-vad');
  });

  it('refuses a key set whose role names a key it does not list', () => {
    const broken = { ...rotated, roles: { ...rotated.roles, manifest: { keyIds: ['f'.repeat(64)], threshold: 1 } } };
    expect(codeOf(() => createTrust(broken))).toBe('EF_KEYSET_INVALID');
  });

  it('refuses a threshold above the number of keys', () => {
    const broken = { ...rotated, roles: { ...rotated.roles, root: { keyIds: rotated.roles.root.keyIds, threshold: 2 } } };
    expect(codeOf(() => createTrust(broken))).toBe('EF_KEYSET_INVALID');
  });

  it('refuses a key whose id is not the hash of its public key', () => {
    const [first] = rotated.keys;
    if (!first) throw new Error('key set has keys');
    const forged = { ...rotated, keys: [{ ...first, keyId: 'e'.repeat(64) }, ...rotated.keys.slice(1)] };
    expect(codeOf(() => createTrust(forged))).toBe('EF_KEY_INVALID');
  });
});

describe('version floor (rollback attack)', () => {
  it('refuses an older version unless the signed document says rollback', () => {
    expect(codeOf(() => checkVersionFloor('vad', '4.9.0', '5.0.0', false))).toBe('EF_MODEL_VERSION_ROLLBACK');
    expect(codeOf(() => checkVersionFloor('vad', '4.9.0', '5.0.0', true))).toBeUndefined();
    expect(codeOf(() => checkVersionFloor('vad', '5.0.0', '5.0.0', false))).toBeUndefined();
    expect(codeOf(() => checkVersionFloor('vad', '5.1.0-rc.1', '5.0.0', false))).toBeUndefined();
    expect(codeOf(() => checkVersionFloor('vad', '1.0.0', undefined, false))).toBeUndefined();
  });
});

describe('desired-state entry size', () => {
  it('is the entry as it travels, in UTF-8 bytes, with and without a rollout id', () => {
    const manifest = sampleSignedManifest(keys, { metadata: { note: 'café ☕' } });
    for (const entry of [{ manifest }, { manifest, rolloutId: 'ro-12345678' }]) {
      expect(desiredEntryBytes(entry)).toBe(new TextEncoder().encode(JSON.stringify(entry)).length);
    }
  });
});
