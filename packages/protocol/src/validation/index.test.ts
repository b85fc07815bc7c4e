import { createTestKeys, sampleManifest, sampleSignedDesiredState, sampleSignedManifest, TEST_NOW } from '@edgefleet/test-utils/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createTrust, verifyDesiredState, verifyKeySetUpdate, verifyManifest } from '../documents/index.ts';
import { EdgefleetError } from '../errors/index.ts';
import { ManifestPayload, MESSAGE_SCHEMAS, SignedManifest } from '../schemas/index.ts';
import { signPayload } from '../signing/index.ts';
import { findForbiddenKey, parseAndValidate, parseJson, validate } from './index.ts';

const keys = createTestKeys();

/** Runs `run` and asserts it either returns or throws an EdgefleetError with one of `codes`. */
function expectOnlyCoded(run: () => unknown, codes: readonly string[]): void {
  try {
    run();
  } catch (error) {
    if (!(error instanceof EdgefleetError)) throw new Error(`threw a non-coded error: ${String(error)}`);
    expect(codes).toContain(error.code);
  }
}

/** Every JSON pointer path inside a value (object members and array items). */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [prefix];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))];
}

/** A deep copy of `value` with the member at `path` replaced (or deleted when replacement is undefined). */
function mutate(value: unknown, path: (string | number)[], replacement: unknown): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  if (path.length === 0) return replacement;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (replacement !== undefined) node[last] = replacement;
  else if (Array.isArray(node))
    node.splice(last as number, 1); // as JSON would have it: no holes
  else delete node[last];
  return copy;
}

const VERIFY_CODES = [
  'EF_SCHEMA_INVALID',
  'EF_SIGNATURE_MISSING',
  'EF_SIGNATURE_INVALID',
  'EF_SIGNATURE_UNKNOWN_KEY',
  'EF_SIGNATURE_THRESHOLD',
  'EF_DOCUMENT_EXPIRED',
  'EF_DOCUMENT_NOT_YET_VALID',
  'EF_DOCUMENT_INCONSISTENT',
  'EF_DESIRED_STATE_WRONG_DEVICE',
  'EF_DESIRED_STATE_REPLAYED',
  'EF_TENSOR_INVALID',
  'EF_KEY_INVALID',
  'EF_KEYSET_INVALID',
  'EF_KEYSET_ROLLBACK',
];

describe('validate', () => {
  it('names the field and what it expected', () => {
    const manifest = { ...sampleManifest(), version: 'v1.2' };
    expect(() => validate(ManifestPayload, manifest)).toThrow(
      /EF_SCHEMA_INVALID: model manifest is invalid at \/version: expected a semantic version such as 1\.4\.0/,
    );
  });

  it('names a missing field', () => {
    const { name: _name, ...manifest } = sampleManifest();
    expect(() => validate(ManifestPayload, manifest)).toThrow(/at \/name: is missing; expected a model name/);
  });

  it('refuses unknown fields, including an own __proto__ member from JSON', () => {
    const manifest = JSON.parse(JSON.stringify(sampleManifest()).replace('{', '{"__proto__":{"admin":true},'));
    try {
      validate(ManifestPayload, manifest);
      expect.unreachable('validate accepted __proto__');
    } catch (error) {
      expect(error).toMatchObject({ code: 'EF_SCHEMA_INVALID' });
      expect((error as EdgefleetError).message).toContain('/__proto__: a key named "__proto__" is never allowed');
    }
    expect(({} as { admin?: boolean }).admin).toBeUndefined();
  });

  it('refuses __proto__, constructor and prototype keys anywhere, also where a schema takes free keys (metadata), and in signed manifests', () => {
    const keys = createTestKeys();
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const payload = JSON.parse(
        JSON.stringify(sampleManifest())
          .replace('{', `{"metadata":{"${key}":{"admin":"yes"}},`)
          .replace(/,"metadata":\{[^}]*\}/, ''),
      );
      expect(() => validate(ManifestPayload, payload), key).toThrow(new RegExp(`/metadata/${key}: a key named`));
      // Signed by a trusted key all the same (an older server signed what it was given): the device refuses it.
      const signed = signPayload(payload, [keys.manifest]);
      expect(() => verifyManifest(JSON.parse(JSON.stringify(signed)), keys.trust, { now: TEST_NOW }), key).toThrow(/EF_SCHEMA_INVALID/);
    }
    expect(findForbiddenKey({ a: [{ b: { c: 1 } }, { d: { prototype: 1 } }] })).toBe('/a/1/d/prototype');
    expect(findForbiddenKey(JSON.parse('[[[[[[[[[[{"x":{"__proto__":{}}}]]]]]]]]]]'))).toBe('/0/0/0/0/0/0/0/0/0/0/x/__proto__');
  });

  it('parseAndValidate refuses a forbidden key however the JSON text spells it, and otherwise answers as parseJson then validate (property)', () => {
    const manifest = JSON.stringify(sampleManifest());
    // Only a \\u escape can write a letter other than as itself: each of these is a forbidden key.
    for (const key of ['\\u005f_proto__', '__pr\\u006fto__', 'c\\u006fnstructor', 'prototyp\\u0065', '\\u005F\\u005Fproto\\u005F\\u005F']) {
      const text = manifest.replace(/"metadata":\{[^}]*\}/, `"metadata":{"${key}":{"admin":"yes"}}`);
      expect(text).not.toBe(manifest);
      expect(() => parseAndValidate(ManifestPayload, text, { maxBytes: 1 << 20 }), key).toThrow(
        /a key named "(__proto__|constructor|prototype)" is never allowed/,
      );
    }
    expect(parseAndValidate(ManifestPayload, new TextEncoder().encode(manifest), { maxBytes: 1 << 20 })).toEqual(sampleManifest());
    const outcome = (run: () => unknown): string => {
      try {
        return JSON.stringify(run());
      } catch (error) {
        return `${(error as EdgefleetError).code}: ${(error as Error).message}`;
      }
    };
    // Keys drawn from the forbidden names, some written with escapes, at any depth of any JSON.
    const escaped = (key: string, mask: number) =>
      [...key].map((c, i) => ((mask >> i) & 1 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c)).join('');
    const key = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'metadata', 'name'), fc.string({ maxLength: 6 }));
    const tree = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        fc.jsonValue({ maxDepth: 1 }),
        fc.array(tie('node'), { maxLength: 3 }),
        fc.array(fc.tuple(key, tie('node'), fc.nat()), { maxLength: 3 }),
      ),
    })).node;
    const write = (node: unknown): string =>
      Array.isArray(node) &&
      node.every((entry) => Array.isArray(entry) && entry.length === 3 && typeof entry[0] === 'string' && typeof entry[2] === 'number')
        ? `{${(node as [string, unknown, number][]).map(([k, v, mask]) => `${JSON.stringify(k).replace(/^"|"$/g, '') === k ? `"${escaped(k, mask)}"` : JSON.stringify(k)}:${write(v)}`).join(',')}}`
        : Array.isArray(node)
          ? `[${node.map(write).join(',')}]`
          : JSON.stringify(node);
    fc.assert(
      fc.property(tree, (node) => {
        const text = write(node);
        for (const schema of [ManifestPayload, MESSAGE_SCHEMAS.telemetry, MESSAGE_SCHEMAS.reported]) {
          expect(outcome(() => parseAndValidate(schema, text, { maxBytes: 1 << 20 }))).toBe(
            outcome(() => validate(schema, parseJson(text, { maxBytes: 1 << 20 }))),
          );
        }
      }),
      { numRuns: 400 },
    );
  });

  it('describes an enum by its allowed values', () => {
    const manifest = sampleManifest();
    const bad = { ...manifest, runtime: { executionProviders: ['gpu'] } };
    expect(() => validate(ManifestPayload, bad)).toThrow(/\/runtime\/executionProviders\/0: expected one of webgpu, wasm, cpu/);
  });

  it('never throws anything but EF_SCHEMA_INVALID on arbitrary JSON, for every message kind', () => {
    for (const schema of [...Object.values(MESSAGE_SCHEMAS), SignedManifest]) {
      fc.assert(
        fc.property(fc.jsonValue(), (value) => {
          expectOnlyCoded(() => validate(schema, value), ['EF_SCHEMA_INVALID']);
        }),
        { numRuns: 50 },
      );
    }
  });

  it('never throws anything but EF_SCHEMA_INVALID on arbitrary JavaScript values', () => {
    fc.assert(
      fc.property(
        fc.anything({ withBigInt: true, withMap: true, withSet: true, withTypedArray: true, withDate: true, withNullPrototype: true }),
        (value) => {
          expectOnlyCoded(() => validate(SignedManifest, value), ['EF_SCHEMA_INVALID']);
        },
      ),
    );
  });
});

describe('document verification on hostile input', () => {
  const manifest = sampleSignedManifest(keys);
  const desired = sampleSignedDesiredState(keys);
  const now = TEST_NOW + 1000;

  it('answers any JSON value with a coded error', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expectOnlyCoded(() => verifyManifest(value, keys.trust, { now }), VERIFY_CODES);
        expectOnlyCoded(() => verifyDesiredState(value, keys.trust, { now, deviceId: 'cam-042' }), VERIFY_CODES);
        expectOnlyCoded(() => verifyKeySetUpdate(keys.trust, value, { now }), VERIFY_CODES);
        expectOnlyCoded(() => createTrust(value), VERIFY_CODES);
      }),
    );
  });

  it('answers a valid document with any one member replaced or removed with a coded error, never a crash', () => {
    for (const [document, verify] of [
      [manifest, (v: unknown) => verifyManifest(v, keys.trust, { now })],
      [desired, (v: unknown) => verifyDesiredState(v, keys.trust, { now, deviceId: 'cam-042' })],
    ] as const) {
      const all = paths(document);
      fc.assert(
        fc.property(fc.constantFrom(...all), fc.option(fc.jsonValue(), { nil: undefined }), (path, replacement) => {
          expectOnlyCoded(() => verify(mutate(document, path, replacement)), VERIFY_CODES);
        }),
        { numRuns: 300 },
      );
    }
  });
});

describe('parseJson', () => {
  it('refuses oversized payloads before parsing', () => {
    expect(() => parseJson(new Uint8Array(2048), { maxBytes: 1024 })).toThrow(expect.objectContaining({ code: 'EF_MESSAGE_TOO_LARGE' }));
  });

  it('refuses invalid UTF-8 and non-JSON with EF_JSON_INVALID', () => {
    expect(() => parseJson(Uint8Array.from([0x7b, 0xff, 0x7d]), { maxBytes: 100 })).toThrow(
      expect.objectContaining({ code: 'EF_JSON_INVALID' }),
    );
    expect(() => parseJson('{"a":', { maxBytes: 100 })).toThrow(expect.objectContaining({ code: 'EF_JSON_INVALID' }));
  });

  it('parses deeply nested JSON without overflowing the stack', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expectOnlyCoded(() => validate(SignedManifest, parseJson(deep, { maxBytes: 1 << 20 })), ['EF_SCHEMA_INVALID', 'EF_JSON_INVALID']);
  });
});
