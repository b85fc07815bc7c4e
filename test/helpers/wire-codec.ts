/**
 * How values cross between Node and a Chromium page in the contract RPC (remote.ts and
 * test/browser/contracts-page.ts): JSON, with typed arrays tagged and their bytes in base64 (a
 * 4 MB model as a list of numbers takes seconds to cross; as base64, milliseconds). Both sides
 * are little-endian. Shared by both sides; the page gets it bundled.
 */
const TYPED = { Uint8Array, Int8Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array } as const;
type TypedName = keyof typeof TYPED;

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Encodes typed arrays inside `value` (as base64 bytes); `other` encodes any other object (a page turns objects with methods into handles). */
export function encodeWire(value: unknown, other?: (object: object) => unknown): unknown {
  if (value === undefined || value === null || typeof value !== 'object') return value;
  for (const name of Object.keys(TYPED) as TypedName[]) {
    if (value instanceof TYPED[name]) {
      const view = value as ArrayBufferView;
      return { $typed: name, base64: toBase64(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)) };
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
    const bytes = fromBase64(tagged.base64 ?? '');
    return new TYPED[tagged.$typed](bytes.buffer as ArrayBuffer, 0, bytes.byteLength / TYPED[tagged.$typed].BYTES_PER_ELEMENT);
  }
  const special = other?.(value as Record<string, unknown>);
  if (special !== undefined) return special;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decodeWire(v, other)]));
}
