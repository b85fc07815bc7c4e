import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PacketScanner } from './packet-guard.ts';

const limits = { beforeAuthentication: 100, publish: 1000, other: 50 };

/** A packet: first byte, the remaining length encoded as MQTT does, and that many body bytes. */
function packet(first: number, length: number): Uint8Array {
  const encoded: number[] = [];
  let rest = length;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    encoded.push(byte);
  } while (rest > 0);
  return Uint8Array.from([first, ...encoded, ...new Uint8Array(length)]);
}

function scan(bytes: Uint8Array, cuts: number[], authenticatedAfter = Number.POSITIVE_INFINITY) {
  const scanner = new PacketScanner(limits);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...points, bytes.length]) {
    if (from >= authenticatedAfter) scanner.authenticated = true;
    const verdict = scanner.feed(bytes.subarray(from, to));
    if (!verdict.ok) return verdict.reason;
    from = to;
  }
  return 'ok';
}

describe('MQTT packet guard', () => {
  it('follows packet boundaries whatever the chunking, and judges each fixed header once', () => {
    const connect = packet(0x10, 60);
    const publish = packet(0x30, 900);
    const stream = Uint8Array.from([...connect, ...publish, ...packet(0x82, 20)]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (cuts) => {
        // Authentication completes between CONNECT and the next packet (a cut is always made there).
        expect(scan(stream, [...cuts, connect.length], connect.length)).toBe('ok');
      }),
    );
  });

  it('refuses an oversized packet from its header alone, before authentication with the small limit', () => {
    expect(scan(Uint8Array.from([0x10, 0xff, 0xff, 0xff, 0x7f]), [])).toBe('packet-too-large');
    expect(scan(packet(0x10, 101), [])).toBe('packet-too-large');
    // After CONNECT, a PUBLISH before authentication is held to the CONNECT limit...
    expect(scan(Uint8Array.from([...packet(0x10, 10), ...packet(0x30, 500)]), [])).toBe('packet-too-large');
    // ...and once authenticated to the payload limit.
    expect(scan(Uint8Array.from([...packet(0x10, 10), ...packet(0x30, 500)]), [12], 12)).toBe('ok');
    expect(scan(Uint8Array.from([...packet(0x10, 10), ...packet(0x30, 1001)]), [12], 12)).toBe('packet-too-large');
    expect(scan(Uint8Array.from([...packet(0x10, 10), ...packet(0x82, 51)]), [12], 12)).toBe('packet-too-large');
  });

  it('refuses a first packet that is not CONNECT and a remaining length of five bytes', () => {
    expect(scan(packet(0x30, 5), [])).toBe('malformed-packet');
    expect(scan(Uint8Array.from([0x10, 0x80, 0x80, 0x80, 0x80, 0x01]), [])).toBe('malformed-packet');
  });
});
