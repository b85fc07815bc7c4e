/**
 * Runtime validation of every message against its JSON Schema, with errors a person can act on.
 *
 * Validators never throw anything but EdgefleetError('EF_SCHEMA_INVALID' | 'EF_JSON_INVALID' |
 * 'EF_MESSAGE_TOO_LARGE'): whatever arrives over MQTT or HTTP, the caller gets a code, the JSON
 * pointer of the offending field and what was expected there.
 */
import type { Static, TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';
import { utf8Decode } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';

export interface ValidationIssue {
  /** JSON pointer (RFC 6901) of the field; "" is the whole message. */
  readonly path: string;
  readonly message: string;
}

/** At most this many issues are reported: enough to fix a message, bounded for hostile input. */
const MAX_ISSUES = 10;

// Compiled validators are cached per schema object; schemas are module constants, so this holds a
// fixed, small set (a WeakMap lets ad hoc schemas be collected).
const validators = new WeakMap<TSchema, Validator<Record<PropertyKey, TSchema>, TSchema>>();

function validatorFor(schema: TSchema): Validator<Record<PropertyKey, TSchema>, TSchema> {
  let validator = validators.get(schema);
  if (!validator) {
    validator = Compile(schema) as Validator<Record<PropertyKey, TSchema>, TSchema>;
    validators.set(schema, validator);
  }
  return validator;
}

/**
 * Keys that reach an object's prototype when code copies or merges it (`{...x}`, Object.assign,
 * lodash.merge): never valid in any edgefleet message or document, whatever its schema says
 * (TypeBox's Record accepts an own `__proto__` key from JSON.parse).
 */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * The JSON pointer of the first forbidden key in `value`, or undefined. Iterative (no stack limit
 * on deep input), and the pointer is built only for a key it finds: every message and document
 * goes through here, most of them clean.
 */
export function findForbiddenKey(value: unknown): string | undefined {
  const stack: Step[] = [{ node: value, parent: undefined, key: '' }];
  while (stack.length > 0) {
    const step = stack.pop() as Step;
    const node = step.node;
    if (node === null || typeof node !== 'object') continue;
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) {
        const item = node[i];
        if (item !== null && typeof item === 'object') stack.push({ node: item, parent: step, key: String(i) });
      }
      continue;
    }
    for (const key of Object.keys(node)) {
      if (FORBIDDEN_KEYS.has(key)) return pointerOf({ node: undefined, parent: step, key });
      const child = (node as Record<string, unknown>)[key];
      if (child !== null && typeof child === 'object') stack.push({ node: child, parent: step, key });
    }
  }
  return undefined;
}

/** One node of the walk, with the way back to the root (the root has no parent). */
interface Step {
  readonly node: unknown;
  readonly parent: Step | undefined;
  readonly key: string;
}

function pointerOf(step: Step): string {
  const keys: string[] = [];
  for (let at: Step | undefined = step; at?.parent !== undefined; at = at.parent) keys.push(escapePointer(at.key));
  return keys.length === 0 ? '' : `/${keys.reverse().join('/')}`;
}

/** True when `value` matches `schema`. Never throws. */
export function matches<T extends TSchema>(schema: T, value: unknown): value is Static<T> {
  return findForbiddenKey(value) === undefined && validatorFor(schema).Check(value);
}

/**
 * Returns `value` typed by `schema`, or throws EF_SCHEMA_INVALID naming the field and what it
 * expected.
 *
 * @example
 * const manifest = validate(ManifestPayload, JSON.parse(text));
 */
export function validate<T extends TSchema>(schema: T, value: unknown, what?: string): Static<T> {
  return check(schema, value, what, true);
}

/**
 * Whether JSON text could hold a forbidden key: only if it spells one of the names, or holds a
 * `\u` escape (the one way JSON can write a letter other than as itself). Scanning the text is far
 * cheaper than walking every object parsed from it; only text that might hold one is walked.
 */
function mayHoldForbiddenKey(text: string): boolean {
  return text.includes('\\u') || text.includes('__proto__') || text.includes('constructor') || text.includes('prototype');
}

/**
 * Parses strict UTF-8 JSON within a size limit and validates it against `schema`: `parseJson`
 * then `validate`, with the same errors, and the walk for forbidden keys only over text that
 * might hold one (every device message comes through here).
 */
export function parseAndValidate<T extends TSchema>(
  schema: T,
  bytes: Uint8Array | string,
  options: ParseJsonOptions & { readonly what?: string },
): Static<T> {
  const text = jsonText(bytes, options);
  return check(schema, parseText(text), options.what, mayHoldForbiddenKey(text));
}

function check<T extends TSchema>(schema: T, value: unknown, what: string | undefined, walk: boolean): Static<T> {
  const validator = validatorFor(schema);
  const forbidden = walk ? findForbiddenKey(value) : undefined;
  if (forbidden !== undefined) {
    const subject = what ?? titleOf(schema);
    const key = forbidden.slice(forbidden.lastIndexOf('/') + 1);
    throw new EdgefleetError(
      'EF_SCHEMA_INVALID',
      `${subject} is invalid at ${forbidden}: a key named "${key}" is never allowed (it would reach object prototypes); remove it`,
      { details: { subject, issues: [{ path: forbidden, message: 'is a forbidden key' }] } },
    );
  }
  if (validator.Check(value)) return value as Static<T>;
  const issues = explain(schema, validator.Errors(value));
  const subject = what ?? titleOf(schema);
  const first = issues[0] ?? { path: '', message: 'does not match the schema' };
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  throw new EdgefleetError('EF_SCHEMA_INVALID', `${subject} is invalid at ${first.path || '/'}: ${first.message}${more}`, {
    details: { subject, issues },
  });
}

export interface ParseJsonOptions {
  /** Refuse payloads above this many bytes before decoding them. */
  readonly maxBytes: number;
}

/** Decodes strict UTF-8 JSON from bytes within a size limit; EF_MESSAGE_TOO_LARGE / EF_JSON_INVALID. */
export function parseJson(bytes: Uint8Array | string, options: ParseJsonOptions): unknown {
  return parseText(jsonText(bytes, options));
}

/** The text of `bytes` within the size limit: EF_MESSAGE_TOO_LARGE, or EF_JSON_INVALID for bytes that are not UTF-8. */
function jsonText(bytes: Uint8Array | string, options: ParseJsonOptions): string {
  const size = typeof bytes === 'string' ? bytes.length : bytes.byteLength;
  if (size > options.maxBytes) {
    throw new EdgefleetError('EF_MESSAGE_TOO_LARGE', `payload is ${size} bytes, above the limit of ${options.maxBytes}`, {
      details: { size, limit: options.maxBytes },
    });
  }
  return typeof bytes === 'string' ? bytes : utf8Decode(bytes);
}

function parseText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new EdgefleetError('EF_JSON_INVALID', `payload is not JSON (${(cause as Error).message})`, { cause });
  }
}

interface RawError {
  readonly keyword: string;
  readonly schemaPath: string;
  readonly instancePath: string;
  readonly params: Record<string, unknown>;
  readonly message: string;
}

function explain(schema: TSchema, errors: readonly RawError[]): ValidationIssue[] {
  // A union reports one error per branch and then one for itself; keep only the union's, which
  // carries the description of every acceptable form.
  const unions = errors.filter((e) => e.keyword === 'anyOf').map((e) => `${e.schemaPath}/anyOf/`);
  const issues: ValidationIssue[] = [];
  for (const error of errors) {
    if (issues.length >= MAX_ISSUES) break;
    if (unions.some((prefix) => error.schemaPath.startsWith(prefix))) continue;
    const node = resolvePointer(schema, error.schemaPath);
    switch (error.keyword) {
      case 'boolean':
        // The `additionalProperties: false` companion of the error below: reported there.
        continue;
      case 'required':
        for (const name of asStrings(error.params.requiredProperties)) {
          const property = propertySchema(node, name);
          issues.push({
            path: `${error.instancePath}/${escapePointer(name)}`,
            message: `is missing; expected ${describe(property, 'a value')}`,
          });
        }
        continue;
      case 'additionalProperties':
        for (const name of asStrings(error.params.additionalProperties)) {
          issues.push({
            path: `${error.instancePath}/${escapePointer(name)}`,
            message: 'is not a known field; remove it (check its spelling)',
          });
        }
        continue;
      default:
        issues.push({ path: error.instancePath, message: `expected ${describe(node, error.message)}` });
    }
  }
  return issues.slice(0, MAX_ISSUES);
}

function describe(node: unknown, fallback: string): string {
  if (node && typeof node === 'object' && typeof (node as { description?: unknown }).description === 'string') {
    return (node as { description: string }).description;
  }
  return fallback.replace(/^must (be )?/, '');
}

function propertySchema(node: unknown, name: string): unknown {
  const properties = node && typeof node === 'object' ? (node as { properties?: Record<string, unknown> }).properties : undefined;
  return properties && Object.hasOwn(properties, name) ? properties[name] : undefined;
}

/** Resolves "#/properties/a/items" inside a schema; undefined when it does not lead anywhere. */
function resolvePointer(schema: unknown, pointer: string): unknown {
  let node = schema;
  for (const raw of pointer.replace(/^#\/?/, '').split('/')) {
    if (raw === '') continue;
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (!node || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function asStrings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}

function titleOf(schema: TSchema): string {
  const title = (schema as { title?: unknown }).title;
  return typeof title === 'string' ? title : 'message';
}
