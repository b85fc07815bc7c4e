/**
 * How values cross between Node and a Chromium page in the contract RPC (remote.ts and
 * test/browser/contracts-page.ts): JSON, with typed arrays tagged and their bytes in base64url (a
 * 4 MB model as a list of numbers takes seconds to cross; as base64, milliseconds). Both sides
 * are little-endian. Shared by both sides; the page gets it bundled.
 */
import { fromBase64Url, toBase64Url } from '@edgefleet/protocol';

const TYPED = { Uint8Array, Int8Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array } as const;
type TypedName = keyof typeof TYPED;

/** Encodes typed arrays inside `value` (as base64 bytes); `other` encodes any other object (a page turns objects with methods into handles). */
export function encodeWire(value: unknown, other?: (object: object) => unknown): unknown {
  if (value === undefined || value === null || typeof value !== 'object') return value;
  for (const name of Object.keys(TYPED) as TypedName[]) {
    if (value instanceof TYPED[name]) {
      const view = value as ArrayBufferView;
      return { $typed: name, base64: toBase64Url(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)) };
    }
  }
  if (Array.isArray(value)) return value.map((v) => encodeWire(v, other));
  const special = other?.(value);
  if (special !== undefined) return special;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encodeWire(v, other)]));
}

/** Decodes tagged typed arrays inside `value`; `other` decodes any other tagged object (a handle). */
export function decodeWire(value: unknown, other?: (object: Record<string, unknown>) => unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => decodeWire(v, other));
  const tagged = value as { $typed?: TypedName; base64?: string };
  if (tagged.$typed) {
    const bytes = fromBase64Url(tagged.base64 ?? '');
    return new TYPED[tagged.$typed](bytes.buffer as ArrayBuffer, 0, bytes.byteLength / TYPED[tagged.$typed].BYTES_PER_ELEMENT);
  }
  const special = other?.(value as Record<string, unknown>);
  if (special !== undefined) return special;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decodeWire(v, other)]));
}
