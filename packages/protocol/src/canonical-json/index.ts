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
  return serialize(value, '');
}

/** The canonical form as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Uint8Array {
  return utf8Encode(canonicalize(value));
}

function serialize(value: unknown, path: string): string {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw new EdgefleetError('EF_CANONICAL_JSON_UNSUPPORTED', `${path || '/'} is ${value}, which JSON cannot carry`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((item, i) => serialize(item, `${path}/${i}`)).join(',')}]`;
  }
  if (typeof value === 'object' && isPlainObject(value)) {
    const members: string[] = [];
    for (const key of Object.keys(value).sort()) {
      const member = (value as Record<string, unknown>)[key];
      // JSON.stringify drops undefined members; a signature must not silently cover less than
      // the caller thinks, so refuse instead.
      members.push(`${JSON.stringify(key)}:${serialize(member, `${path}/${key}`)}`);
    }
    return `{${members.join(',')}}`;
  }
  throw new EdgefleetError(
    'EF_CANONICAL_JSON_UNSUPPORTED',
    `${path || '/'} is a ${value === undefined ? 'undefined value' : typeof value === 'object' ? 'non-plain object' : typeof value}`,
  );
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
