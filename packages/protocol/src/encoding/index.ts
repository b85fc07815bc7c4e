/**
 * Byte encodings used on the wire. Pure functions over Uint8Array so they run unchanged in
 * browsers and Node (no Buffer).
 */
import { EdgefleetError, type ErrorCode } from '../errors/index.ts';

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const HEX = /^(?:[0-9a-f]{2})*$/;

/** RFC 4648 §5 base64url without padding. */
export function toBase64Url(bytes: Uint8Array): string {
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/** Decodes unpadded base64url; refuses padding, the standard alphabet and impossible lengths. */
export function fromBase64Url(text: string, code: ErrorCode = 'EF_SCHEMA_INVALID'): Uint8Array {
  if (!BASE64URL.test(text) || text.length % 4 === 1) {
    throw new EdgefleetError(code, 'expected unpadded base64url text (A-Z a-z 0-9 - _)');
  }
  const binary = atob(text.replaceAll('-', '+').replaceAll('_', '/'));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  // Non-canonical encodings (stray bits in the last character) would let two texts decode to the
  // same bytes; refuse them so that every value has exactly one spelling.
  if (toBase64Url(bytes) !== text) {
    throw new EdgefleetError(code, 'base64url text is not in canonical form');
  }
  return bytes;
}

export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

export function fromHex(text: string, code: ErrorCode = 'EF_SCHEMA_INVALID'): Uint8Array {
  if (!HEX.test(text)) throw new EdgefleetError(code, 'expected lower-case hex text');
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes UTF-8, refusing malformed sequences instead of silently replacing them. */
export function utf8Decode(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch (cause) {
    throw new EdgefleetError('EF_JSON_INVALID', 'payload is not valid UTF-8', { cause });
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}
