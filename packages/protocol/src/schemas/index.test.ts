/**
 * The schemas are plain JSON Schema: Ajv (the validator behind fastify's route schemas) compiles
 * every one in strict mode and agrees with the protocol's own validator on valid and broken messages.
 */

import { createTestKeys, sampleSignedDesiredState, sampleSignedManifest } from '@edgefleet/test-utils/protocol';
import { Ajv } from 'ajv';
import fc from 'fast-check';
import type { TSchema } from 'typebox';
import { describe, expect, it } from 'vitest';
import { matches } from '../validation/index.ts';
import { MESSAGE_SCHEMAS, SignedKeySet, SignedManifest } from './index.ts';

const schemas: Record<string, TSchema> = { ...MESSAGE_SCHEMAS, manifest: SignedManifest, keySet: SignedKeySet };

describe('JSON Schemas under Ajv (fastify)', () => {
  const ajv = new Ajv({ strict: true, allErrors: false });

  it.each(Object.keys(schemas))('compiles the %s schema in strict mode', (name) => {
    expect(() => ajv.compile(schemas[name] as object)).not.toThrow();
  });

  it('agrees with the protocol validator on real documents and on arbitrary JSON', () => {
    const keys = createTestKeys();
    const manifestCheck = ajv.compile(SignedManifest);
    const desiredCheck = ajv.compile(MESSAGE_SCHEMAS.desired);
    expect(manifestCheck(sampleSignedManifest(keys))).toBe(true);
    expect(desiredCheck(sampleSignedDesiredState(keys))).toBe(true);
    expect(manifestCheck({ ...sampleSignedManifest(keys), extra: 1 })).toBe(false);
    for (const [name, schema] of Object.entries(schemas)) {
      const check = ajv.compile(schema);
      fc.assert(
        fc.property(fc.jsonValue(), (value) => {
          expect(check(value), name).toBe(matches(schema, value));
        }),
        { numRuns: 50 },
      );
    }
  });
});
