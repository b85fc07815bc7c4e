import { createTestKeys, sampleManifest, TEST_NOW } from '@edgefleet/test-utils/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createTrust, signManifest, verifyManifest } from './documents/index.ts';
import { fromBase64Url } from './encoding/index.ts';
import { nodeSigningKey, nodeVerify } from './node.ts';
import { generateSigningKey, nobleVerify, signPayload } from './signing/index.ts';

describe('native ed25519 (Node)', () => {
  it('makes the same signatures as the portable implementation (ed25519 is deterministic)', () => {
    const portable = generateSigningKey();
    const native = nodeSigningKey(portable.secretKey);
    const payload = { type: 'edgefleet.test/v1', n: 1 };
    expect(signPayload(payload, [native]).signatures).toEqual(signPayload(payload, [portable]).signatures);
  });

  it('verifies what noble verifies and refuses what noble refuses, bit for bit', () => {
    const key = generateSigningKey();
    const message = new TextEncoder().encode('edgefleet');
    const signature = fromBase64Url(signPayload({ m: 'x' }, [key]).signatures[0]?.sig ?? '');
    fc.assert(
      fc.property(fc.nat(64 * 8 - 1), (bit) => {
        const flipped = signature.slice();
        flipped[bit >> 3] = (flipped[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        let native: boolean;
        try {
          native = nodeVerify(flipped, message, key.publicKey);
        } catch {
          native = false;
        }
        let portable: boolean;
        try {
          portable = nobleVerify(flipped, message, key.publicKey);
        } catch {
          portable = false;
        }
        expect(native).toBe(portable);
        expect(native).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('verifies manifests through a trust that uses it, and refuses a tampered one', () => {
    const keys = createTestKeys();
    const trust = createTrust(keys.trust.keySet, { verify: nodeVerify });
    const signed = signManifest(sampleManifest(), [nodeSigningKey(keys.manifest.secretKey)]);
    expect(verifyManifest(signed, trust, { now: TEST_NOW + 1000 }).name).toBe('silero-vad');
    const tampered = { ...signed, payload: { ...signed.payload, version: '9.9.9' } };
    expect(() => verifyManifest(tampered, trust, { now: TEST_NOW + 1000 })).toThrow(
      expect.objectContaining({ code: 'EF_SIGNATURE_INVALID' }),
    );
    // Verified once, then remembered: the same document verifies again without a new check.
    expect(verifyManifest(signed, trust, { now: TEST_NOW + 1000 }).version).toBe('5.0.0');
  });
});
