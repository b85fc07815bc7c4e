import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../canonical-json/index.ts';
import { fromBase64Url, fromHex, toHex, utf8Encode } from '../encoding/index.ts';
import { generateSigningKey, keyIdOf, publicKeyEntry, signingKeyFromSecret, signPayload } from './index.ts';

describe('ed25519 signing keys', () => {
  it('derives the RFC 8032 §7.1 test 1 public key from its secret', () => {
    const key = signingKeyFromSecret(fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
    expect(toHex(key.publicKey)).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  });

  it('names a key by the sha256 of its public key', () => {
    const key = generateSigningKey();
    expect(key.keyId).toMatch(/^[0-9a-f]{64}$/);
    expect(publicKeyEntry(key)).toEqual({
      keyId: keyIdOf(key.publicKey),
      algorithm: 'ed25519',
      publicKey: expect.stringMatching(/^[\w-]{43}$/),
    });
  });

  it('refuses a secret of the wrong length with EF_KEY_INVALID', () => {
    expect(() => signingKeyFromSecret(new Uint8Array(31))).toThrow(expect.objectContaining({ code: 'EF_KEY_INVALID' }));
  });

  it('makes standard ed25519 signatures that Node’s own crypto verifies over the canonical payload', () => {
    const key = generateSigningKey();
    const payload = { type: 'edgefleet.manifest/v1', z: 1, a: ['ü', 0.5] };
    const [signature] = signPayload(payload, [key]).signatures;
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(key.publicKey)]);
    const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    const message = Buffer.concat([Buffer.from(utf8Encode('edgefleet-signature-v1\n')), Buffer.from(canonicalBytes(payload))]);
    expect(nodeVerify(null, message, publicKey, Buffer.from(fromBase64Url(signature?.sig ?? '')))).toBe(true);
  });
});
