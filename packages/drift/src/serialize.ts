/**
 * Profiles on the wire: compact JSON, sketch levels as little-endian float32 in base64 (values
 * keep 7 significant digits, plenty for quantiles), moments as float64 numbers. Parsing checks
 * every field and throws a RangeError naming what is wrong: a profile comes from a device and is
 * untrusted input.
 */
import type { CategoryCounts } from './categories.ts';
import type { KllSketch } from './kll.ts';
import type { FeatureProfile } from './profile.ts';

export interface WireNumeric {
  t: 'n';
  /** count, missing, nan, posInf, negInf, min, max, mean, m2 (min/max null when count is 0). */
  m: (number | null)[];
  k: number;
  n: number;
  s: number;
  /** Per level, float32 little-endian, base64. */
  l: string[];
  h?: { e: number[]; c: number[] };
}

export interface WireCategorical {
  t: 'c';
  x: number;
  lim: number;
  c: Record<string, number>;
}

export type WireProfile = WireNumeric | WireCategorical;

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Node's Buffer when there is one: native base64 decoding, several times faster than atob (ingest and every drift pass decode sketches). */
const NodeBuffer = (globalThis as { Buffer?: { from(text: string, encoding: 'base64'): Uint8Array } }).Buffer;

function fromBase64(text: string): Uint8Array {
  if (NodeBuffer) {
    // Buffer skips characters outside the alphabet where atob throws: the decoded length says
    // whether every character was one (4 characters → 3 bytes, less the padding).
    if (text.length % 4 !== 0) throw new Error('not base64');
    const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
    const bytes = NodeBuffer.from(text, 'base64');
    if (bytes.length !== (text.length / 4) * 3 - padding) throw new Error('not base64');
    return bytes;
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The little-endian float32 values of `bytes` (whole values: checked by the caller). */
function float32Values(bytes: Uint8Array): number[] {
  if (LITTLE_ENDIAN) {
    // Copied to an aligned buffer of its own, then read natively.
    const aligned = new Uint8Array(bytes.length);
    aligned.set(bytes);
    const floats = new Float32Array(aligned.buffer);
    // A plain loop: Array.from walks a typed array through its iterator, several times slower.
    const values = new Array<number>(floats.length);
    for (let i = 0; i < floats.length; i++) values[i] = floats[i] as number;
    return values;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

export function toWire(profile: FeatureProfile): WireProfile {
  if (profile.kind === 'categorical')
    return { t: 'c', x: profile.missing, lim: profile.categories.limit, c: { ...profile.categories.counts } };
  const { moments: m, sketch } = profile;
  const finite = (v: number) => (Number.isFinite(v) ? v : null);
  return {
    t: 'n',
    m: [m.count, m.missing, m.nan, m.posInf, m.negInf, finite(m.min), finite(m.max), m.mean, m.m2],
    k: sketch.k,
    n: sketch.n,
    s: sketch.seed,
    l: sketch.levels.map((level) => {
      const view = new DataView(new ArrayBuffer(level.length * 4));
      for (const [i, v] of level.entries()) view.setFloat32(i * 4, v, true);
      return toBase64(new Uint8Array(view.buffer));
    }),
    ...(profile.histogram ? { h: { e: [...profile.histogram.edges], c: [...profile.histogram.counts] } } : {}),
  };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER;
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function fail(what: string): never {
  throw new RangeError(`malformed profile: ${what}`);
}

export function fromWire(wire: unknown, limits: { maxLevels?: number; maxItems?: number; maxCategories?: number } = {}): FeatureProfile {
  if (typeof wire !== 'object' || wire === null) fail('not an object');
  const w = wire as Record<string, unknown>;
  if (w.t === 'c') {
    if (!isCount(w.x)) fail('x (missing) must be a count');
    if (!isCount(w.lim) || w.lim < 1) fail('lim must be a positive count');
    if (typeof w.c !== 'object' || w.c === null || Array.isArray(w.c)) fail('c must be an object of counts');
    const entries = Object.entries(w.c as Record<string, unknown>);
    if (entries.length > Math.min(w.lim, limits.maxCategories ?? 4096) + 1) fail('more categories than its limit');
    const counts = Object.create(null) as Record<string, number>;
    for (const [key, count] of entries) {
      if (key.length > 256 || !isCount(count)) fail(`category "${key.slice(0, 40)}" must be a name of at most 256 characters with a count`);
      counts[key] = count;
    }
    return { kind: 'categorical', missing: w.x, categories: { limit: w.lim, counts } satisfies CategoryCounts };
  }
  if (w.t !== 'n') fail('t must be "n" or "c"');
  const m = w.m;
  if (!Array.isArray(m) || m.length !== 9) fail('m must hold 9 numbers');
  const [count, missing, nan, posInf, negInf, min, max, mean, m2] = m as unknown[];
  if (![count, missing, nan, posInf, negInf].every(isCount)) fail('m[0..4] must be counts');
  if ((count as number) > 0 ? !isNumber(min) || !isNumber(max) || (min as number) > (max as number) : min !== null || max !== null)
    fail('m[5..6] must be min ≤ max (null when nothing was counted)');
  if (!isNumber(mean) || !isNumber(m2) || (m2 as number) < 0) fail('m[7..8] must be a mean and a non-negative M2');
  if (!isCount(w.k) || w.k < 8 || w.k > 65_535) fail('k must be an integer in [8, 65535]');
  if (!isCount(w.n) || w.n !== count) fail('n must equal the finite count m[0]');
  if (!isCount(w.s) || w.s > 0xffffffff) fail('s must be a 32-bit seed');
  if (!Array.isArray(w.l) || w.l.length === 0 || w.l.length > (limits.maxLevels ?? 64)) fail('l must list the sketch levels');
  let items = 0;
  let weight = 0;
  const levels = (w.l as unknown[]).map((encoded, h) => {
    if (typeof encoded !== 'string' || encoded.length > 1_000_000) fail(`level ${h} must be base64`);
    let bytes: Uint8Array;
    try {
      bytes = fromBase64(encoded);
    } catch {
      fail(`level ${h} is not base64`);
    }
    if (bytes.length % 4 !== 0) fail(`level ${h} is not whole float32 values`);
    const values = float32Values(bytes);
    for (const v of values) if (!Number.isFinite(v)) fail(`level ${h} holds a value that is not finite`);
    items += values.length;
    weight += values.length * 2 ** h;
    return values;
  });
  if (items > (limits.maxItems ?? 100_000)) fail('the sketch holds too many items');
  if (weight > (count as number) || (count as number) > 0 === (items === 0)) fail('the sketch weights do not match the count');
  const sketch: KllSketch = {
    k: w.k,
    n: w.n,
    min: (count as number) > 0 ? (min as number) : Number.POSITIVE_INFINITY,
    max: (count as number) > 0 ? (max as number) : Number.NEGATIVE_INFINITY,
    levels,
    seed: w.s,
  };
  let histogram: { edges: number[]; counts: number[] } | undefined;
  if (w.h !== undefined) {
    const h = w.h as { e?: unknown; c?: unknown };
    if (!Array.isArray(h.e) || !h.e.every(isNumber) || h.e.length > 1000) fail('h.e must be finite bin edges');
    for (let i = 1; i < h.e.length; i++) if (!((h.e[i] as number) > (h.e[i - 1] as number))) fail('h.e must be strictly increasing');
    if (!Array.isArray(h.c) || h.c.length !== h.e.length + 1 || !h.c.every(isCount)) fail('h.c must hold one count per bin');
    histogram = { edges: h.e as number[], counts: h.c as number[] };
  }
  return {
    kind: 'numeric',
    moments: {
      count: count as number,
      missing: missing as number,
      nan: nan as number,
      posInf: posInf as number,
      negInf: negInf as number,
      min: sketch.min,
      max: sketch.max,
      mean: mean as number,
      m2: m2 as number,
    },
    sketch,
    ...(histogram ? { histogram } : {}),
  };
}
