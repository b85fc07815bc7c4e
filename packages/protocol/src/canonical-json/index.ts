/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): the exact bytes that signatures cover.
 *
 * - Object members sorted by their names as arrays of UTF-16 code units (§3.2.3), which is what
 *   JavaScript's default string comparison does.
 * - Numbers serialized as ECMAScript's Number.prototype.toString (§3.2.2.3), which is what
 *   JSON.stringify does for finite numbers; NaN and ±Infinity are not JSON and are refused.
 * - Strings escaped as JSON.stringify escapes them (§3.2.2.2), including lone surrogates as \uXXXX
 *   (well-formed JSON.stringify, ES2019).
 * - No whitespace.
 */

import { utf8Encode } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';

export function canonicalize(value: unknown): string {
  try {
    return serialize(value);
  } catch (error) {
    if (error !== UNSUPPORTED) throw error;
    // Found on a second walk: the fast one builds no paths for documents that have nothing wrong.
    const [path, what] = firstUnsupported(value, '') ?? ['', 'value'];
    throw new EdgefleetError('EF_CANONICAL_JSON_UNSUPPORTED', `${path || '/'} is ${what}`);
  }
}

/** The canonical form as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Uint8Array {
  return utf8Encode(canonicalize(value));
}

/** Thrown inside `serialize` only; `canonicalize` turns it into an error that names the path. */
const UNSUPPORTED: unique symbol = Symbol('unsupported');

function serialize(value: unknown): string {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw UNSUPPORTED;
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + serialize(value[i]);
    return `${out}]`;
  }
  if (typeof value === 'object' && isPlainObject(value)) {
    let out = '{';
    let first = true;
    for (const key of Object.keys(value).sort()) {
      // JSON.stringify drops undefined members; a signature must not silently cover less than
      // the caller thinks, so refuse instead.
      out += `${first ? '' : ','}${JSON.stringify(key)}:${serialize((value as Record<string, unknown>)[key])}`;
      first = false;
    }
    return `${out}}`;
  }
  throw UNSUPPORTED;
}

/** The path and description of the first value `serialize` refuses, in the order it walks. */
function firstUnsupported(value: unknown, path: string): [string, string] | undefined {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : [path, `${value}, which JSON cannot carry`];
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = firstUnsupported(item, `${path}/${i}`);
      if (found) return found;
    }
    return undefined;
  }
  if (typeof value === 'object' && isPlainObject(value)) {
    for (const key of Object.keys(value).sort()) {
      const found = firstUnsupported((value as Record<string, unknown>)[key], `${path}/${key}`);
      if (found) return found;
    }
    return undefined;
  }
  return [path, `a ${value === undefined ? 'undefined value' : typeof value === 'object' ? 'non-plain object' : typeof value}`];
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
