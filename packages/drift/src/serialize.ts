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
const NodeBuffer = (
  globalThis as {
    Buffer?: {
      from(text: string, encoding: 'base64'): Uint8Array;
      from(memory: ArrayBuffer): Uint8Array & { write(text: string, offset: number, encoding: 'base64'): number };
    };
  }
).Buffer;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The byte count `text` decodes to when every character is base64 (4 characters → 3 bytes, less the padding). */
function base64Length(text: string, h: number): number {
  if (text.length % 4 !== 0) fail(`level ${h} is not base64`);
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

function bytesOf(text: string, h: number): Uint8Array {
  const length = base64Length(text, h);
  let bytes: Uint8Array;
  if (NodeBuffer) {
    // Buffer skips characters outside the alphabet where atob throws: the decoded length says
    // whether every character was one.
    bytes = NodeBuffer.from(text, 'base64');
  } else {
    let binary: string;
    try {
      binary = atob(text);
    } catch {
      fail(`level ${h} is not base64`);
    }
    bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  }
  if (bytes.length !== length) fail(`level ${h} is not base64`);
  if (length % 4 !== 0) fail(`level ${h} is not whole float32 values`);
  return bytes;
}

/** A level's little-endian float32 values, each checked finite. */
function decodeLevel(text: string, h: number): number[] {
  const bytes = bytesOf(text, h);
  const values = new Array<number>(bytes.length / 4);
  if (LITTLE_ENDIAN) {
    // Copied to an aligned buffer of its own, then read natively. A plain loop: Array.from walks
    // a typed array through its iterator, several times slower.
    const aligned = new Uint8Array(bytes.length);
    aligned.set(bytes);
    const floats = new Float32Array(aligned.buffer);
    for (let i = 0; i < floats.length; i++) values[i] = floats[i] as number;
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(i * 4, true);
  }
  for (const v of values) if (!Number.isFinite(v)) fail(`level ${h} holds a value that is not finite`);
  return values;
}

/** One buffer, grown as needed, that `checkLevel` decodes into (Node, little-endian). */
let scratch: { bytes: Uint8Array & { write(text: string, offset: number, encoding: 'base64'): number }; words: Uint32Array } | undefined;

/** Checks a level as `decodeLevel` does and returns its value count, decoding into `scratch`. */
function checkLevel(text: string, h: number): number {
  if (!NodeBuffer || !LITTLE_ENDIAN) return decodeLevel(text, h).length;
  const length = base64Length(text, h);
  if (!scratch || scratch.bytes.length < length) {
    const memory = new ArrayBuffer(Math.max(4096, length));
    scratch = { bytes: NodeBuffer.from(memory), words: new Uint32Array(memory) };
  }
  if (scratch.bytes.write(text, 0, 'base64') !== length) fail(`level ${h} is not base64`);
  if (length % 4 !== 0) fail(`level ${h} is not whole float32 values`);
  // A float32 is not finite when all its exponent bits are set (an infinity or a NaN).
  const words = scratch.words;
  for (let i = 0; i < length / 4; i++)
    if (((words[i] as number) & 0x7f800000) === 0x7f800000) fail(`level ${h} holds a value that is not finite`);
  return length / 4;
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

/** Limits on a profile read from the wire (a device's: untrusted). */
export interface WireLimits {
  maxLevels?: number;
  maxItems?: number;
  maxCategories?: number;
}

/** Parses a profile from the wire, checking every field; a RangeError names what is wrong. */
export function fromWire(wire: unknown, limits: WireLimits = {}): FeatureProfile {
  return read(wire, limits, true) as FeatureProfile;
}

/**
 * Checks a profile exactly as `fromWire` does, without building it: the telemetry ingest refuses a
 * window whose profiles would not parse, and stores the window as it came. Sketch levels are
 * decoded into one reused buffer and never turned into numbers, so a check allocates next to
 * nothing (it runs for every profile of every window a fleet sends).
 */
export function checkWire(wire: unknown, limits: WireLimits = {}): void {
  read(wire, limits, false);
}

function read(wire: unknown, limits: WireLimits, build: boolean): FeatureProfile | undefined {
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
      if (build) counts[key] = count;
    }
    if (!build) return undefined;
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
  const levels: number[][] = [];
  for (let h = 0; h < w.l.length; h++) {
    const encoded = w.l[h] as unknown;
    if (typeof encoded !== 'string' || encoded.length > 1_000_000) fail(`level ${h} must be base64`);
    let length: number;
    if (build) {
      const values = decodeLevel(encoded, h);
      levels.push(values);
      length = values.length;
    } else {
      length = checkLevel(encoded, h);
    }
    items += length;
    weight += length * 2 ** h;
  }
  if (items > (limits.maxItems ?? 100_000)) fail('the sketch holds too many items');
  if (weight > (count as number) || (count as number) > 0 === (items === 0)) fail('the sketch weights do not match the count');
  let histogram: { edges: number[]; counts: number[] } | undefined;
  if (w.h !== undefined) {
    const h = w.h as { e?: unknown; c?: unknown };
    if (!Array.isArray(h.e) || !h.e.every(isNumber) || h.e.length > 1000) fail('h.e must be finite bin edges');
    for (let i = 1; i < h.e.length; i++) if (!((h.e[i] as number) > (h.e[i - 1] as number))) fail('h.e must be strictly increasing');
    if (!Array.isArray(h.c) || h.c.length !== h.e.length + 1 || !h.c.every(isCount)) fail('h.c must hold one count per bin');
    histogram = { edges: h.e as number[], counts: h.c as number[] };
  }
  if (!build) return undefined;
  const sketch: KllSketch = {
    k: w.k,
    n: w.n,
    min: (count as number) > 0 ? (min as number) : Number.POSITIVE_INFINITY,
    max: (count as number) > 0 ? (max as number) : Number.NEGATIVE_INFINITY,
    levels,
    seed: w.s,
  };
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
