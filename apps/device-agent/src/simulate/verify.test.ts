import { generateSigningKey, utf8Encode } from '@edgefleet/protocol';
import { nodeSigningKey, nodeVerify } from '@edgefleet/protocol/node';
import { describe, expect, it } from 'vitest';
import { verifiedOnce } from './index.ts';

describe("the simulator's shared ed25519 check", () => {
  const key = nodeSigningKey(generateSigningKey().secretKey);
  const signed = (text: string) => {
    const message = utf8Encode(text);
    return { message, signature: (key.sign as (m: Uint8Array) => Uint8Array)(message) };
  };

  function counting() {
    let calls = 0;
    const verify: typeof nodeVerify = (signature, message, publicKey) => {
      calls++;
      return nodeVerify(signature, message, publicKey);
    };
    return { verify, calls: () => calls };
  }

  it('checks a signature over the same bytes once, and every other message with the real check', () => {
    const inner = counting();
    const verify = verifiedOnce(inner.verify);
    const { signature, message } = signed('the signed manifest every device receives');
    expect(verify(signature, message, key.publicKey)).toBe(true);
    expect(verify(signature, utf8Encode('the signed manifest every device receives'), key.publicKey)).toBe(true);
    expect(inner.calls()).toBe(1);
    // The same signature over other bytes: checked for real, and refused.
    expect(verify(signature, utf8Encode('the signed manifest every device receives!'), key.publicKey)).toBe(false);
    expect(inner.calls()).toBe(2);
    // The same signature and bytes under another key: checked for real, and refused.
    expect(verify(signature, message, generateSigningKey().publicKey)).toBe(false);
    expect(inner.calls()).toBe(3);
  });

  it('never remembers a refusal, nor a message changed after it was verified', () => {
    const inner = counting();
    const verify = verifiedOnce(inner.verify);
    const { signature, message } = signed('document');
    const forged = utf8Encode('forged');
    expect(verify(signature, forged, key.publicKey)).toBe(false);
    expect(verify(signature, forged, key.publicKey)).toBe(false);
    expect(inner.calls()).toBe(2);
    expect(verify(signature, message, key.publicKey)).toBe(true);
    message[2] = 0x58; // the caller's buffer changes: the kept copy does not
    expect(verify(signature, message, key.publicKey)).toBe(false);
    expect(inner.calls()).toBe(4);
  });

  it('stays bounded: past its capacity it forgets and checks again', () => {
    const inner = counting();
    const verify = verifiedOnce(inner.verify, 2);
    const items = ['a', 'b', 'c'].map(signed);
    for (const { signature, message } of items) expect(verify(signature, message, key.publicKey)).toBe(true);
    const [first] = items;
    expect(verify(first?.signature as Uint8Array, first?.message as Uint8Array, key.publicKey)).toBe(true);
    expect(inner.calls()).toBe(4);
  });
});
