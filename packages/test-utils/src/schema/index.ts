/**
 * fast-check arbitraries generated from JSON Schemas (the subset our route schemas use: objects,
 * arrays, strings with patterns and lengths, integers and numbers with bounds, booleans, enums,
 * consts, unions). `validFor` produces bodies a route should accept; `invalidFor` produces bodies
 * with one thing wrong, which a route must refuse with a coded 4xx.
 */
import fc from 'fast-check';

type Schema = Record<string, unknown>;

export function validFor(schema: Schema): fc.Arbitrary<unknown> {
  if ('const' in schema) return fc.constant(schema.const);
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as unknown[]));
  if (Array.isArray(schema.anyOf)) return fc.oneof(...(schema.anyOf as Schema[]).map(validFor));
  switch (schema.type) {
    case 'object': {
      const properties = (schema.properties ?? {}) as Record<string, Schema>;
      const required = new Set((schema.required ?? []) as string[]);
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [name, property] of Object.entries(properties)) record[name] = validFor(property);
      return fc.record(record, { requiredKeys: [...required].filter((k) => k in properties) });
    }
    case 'array': {
      const items = validFor((schema.items ?? {}) as Schema);
      const array = fc.array(items, {
        minLength: (schema.minItems as number) ?? 0,
        maxLength: Math.min((schema.maxItems as number) ?? 5, 5),
      });
      return schema.uniqueItems
        ? array
            .map((values) => [...new Map(values.map((v) => [JSON.stringify(v), v])).values()])
            .filter((v) => v.length >= ((schema.minItems as number) ?? 0))
        : array;
    }
    case 'string': {
      if (typeof schema.pattern === 'string') {
        const max = (schema.maxLength as number) ?? 64;
        return fc
          .stringMatching(new RegExp(schema.pattern))
          .filter((s) => s.length <= max && s.length >= ((schema.minLength as number) ?? 0));
      }
      return fc.string({ minLength: (schema.minLength as number) ?? 0, maxLength: Math.min((schema.maxLength as number) ?? 32, 32) });
    }
    case 'integer':
      return fc.integer({ min: (schema.minimum as number) ?? -1000, max: (schema.maximum as number) ?? 1_000_000 });
    case 'number':
      return fc.double({ min: (schema.minimum as number) ?? -1e6, max: (schema.maximum as number) ?? 1e6, noNaN: true });
    case 'boolean':
      return fc.boolean();
    default:
      return fc.jsonValue();
  }
}

/** A valid body with one defect: an unknown field, a field of the wrong type, or a required field missing. */
export function invalidFor(schema: Schema): fc.Arbitrary<unknown> {
  const properties = Object.keys((schema.properties ?? {}) as object);
  const required = (schema.required ?? []) as string[];
  const defects: fc.Arbitrary<unknown>[] = [
    validFor(schema).map((body) => ({ ...(body as object), ['unexpected' + 'Field']: 1 })),
    validFor(schema).map((body) => JSON.parse(`{"__proto__":{"polluted":true},${JSON.stringify(body).slice(1)}`.replace(',}', '}'))),
  ];
  if (properties.length > 0) {
    defects.push(
      fc
        .tuple(validFor(schema), fc.constantFrom(...properties), fc.constantFrom<unknown>({ nested: true }, [1, 2], 12345.5, null))
        .map(([body, key, value]) => ({
          ...(body as object),
          [key]: value,
        })),
    );
  }
  if (required.length > 0) {
    defects.push(
      fc.tuple(validFor(schema), fc.constantFrom(...required)).map(([body, key]) => {
        const copy = { ...(body as Record<string, unknown>) };
        delete copy[key];
        return copy;
      }),
    );
  }
  return fc.oneof(...defects);
}
