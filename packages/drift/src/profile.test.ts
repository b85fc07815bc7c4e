import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { quantileEdges } from './histogram.ts';
import { mergeMoments, variance } from './moments.ts';
import {
  type CategoricalProfile,
  categoricalProfile,
  defaultMethod,
  detectDrift,
  type FeatureProfile,
  mergeProfiles,
  type NumericProfile,
  numericProfile,
  observe,
} from './profile.ts';
import { normals, rng } from './samples.ts';
import { checkWire, fromWire, toWire } from './serialize.ts';

function numeric(values: readonly (number | null)[], edges?: number[], k = 200): NumericProfile {
  const profile = numericProfile({ k, ...(edges ? { edges } : {}) });
  for (const v of values) observe(profile, v);
  return profile;
}

function categorical(values: readonly (string | null)[]): CategoricalProfile {
  const profile = categoricalProfile();
  for (const v of values) observe(profile, v);
  return profile;
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

describe('feature profiles', () => {
  it('counts missing, NaN and infinite values apart and keeps exact moments of the rest', () => {
    const profile = numeric([1, 2, 3, 4, null, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]);
    expect(profile.moments).toMatchObject({ count: 4, missing: 1, nan: 1, posInf: 1, negInf: 2, min: 1, max: 4, mean: 2.5 });
    expect(variance(profile.moments)).toBeCloseTo(5 / 3, 12);
    expect(profile.sketch.n).toBe(4);
  });

  it('merges moments, histograms and category counts associatively and commutatively (property)', () => {
    const edges = [-1, 0, 1];
    const values = fc.array(fc.oneof(fc.double({ min: -1e3, max: 1e3, noNaN: true }), fc.constant(null), fc.constant(Number.NaN)), {
      maxLength: 200,
    });
    fc.assert(
      fc.property(values, values, values, (a, b, c) => {
        const [pa, pb, pc] = [numeric(a, edges, 32), numeric(b, edges, 32), numeric(c, edges, 32)];
        const left = mergeProfiles(mergeProfiles(pa, pb), pc) as NumericProfile;
        const right = mergeProfiles(pa, mergeProfiles(pb, pc)) as NumericProfile;
        const swapped = mergeProfiles(pb, pa) as NumericProfile;
        const whole = numeric([...a, ...b, ...c], edges, 32);
        for (const merged of [left, right]) {
          expect(merged.histogram?.counts).toEqual(whole.histogram?.counts);
          const [m, w] = [merged.moments, whole.moments];
          expect([m.count, m.missing, m.nan, m.min, m.max]).toEqual([w.count, w.missing, w.nan, w.min, w.max]);
          expect(close(m.mean, w.mean)).toBe(true);
          expect(Math.abs(m.m2 - w.m2)).toBeLessThanOrEqual(1e-6 * Math.max(1, w.m2));
        }
        expect(swapped.sketch).toEqual(
          mergeProfiles(pa, pb).kind === 'numeric' ? (mergeProfiles(pa, pb) as NumericProfile).sketch : undefined,
        );
        expect(mergeMoments(pa.moments, pb.moments)).toEqual(mergeMoments(pb.moments, pa.moments));
      }),
      { numRuns: 200 },
    );
    const labels = fc.array(fc.oneof(fc.constantFrom('cat', 'dog', 'bird', 'fish'), fc.constant(null)), { maxLength: 100 });
    fc.assert(
      fc.property(labels, labels, labels, (a, b, c) => {
        const [pa, pb, pc] = [categorical(a), categorical(b), categorical(c)];
        const left = mergeProfiles(mergeProfiles(pa, pb), pc) as CategoricalProfile;
        const right = mergeProfiles(pa, mergeProfiles(pb, pc)) as CategoricalProfile;
        const whole = categorical([...a, ...b, ...c]);
        for (const merged of [left, right, mergeProfiles(pc, mergeProfiles(pb, pa)) as CategoricalProfile]) {
          expect({ ...merged.categories.counts }).toEqual({ ...whole.categories.counts });
          expect(merged.missing).toBe(whole.missing);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('refuses to merge profiles of different kinds or bins', () => {
    expect(() => mergeProfiles(numeric([1]), categorical(['a']))).toThrow(RangeError);
    expect(() => mergeProfiles(numeric([1], [0]), numeric([1], [1]))).toThrow(/different bin edges/);
  });
});

describe('drift decisions (defaults in the spirit of Evidently)', () => {
  it('picks KS or chi-square for small references, Wasserstein or Jensen–Shannon for large ones', () => {
    expect(defaultMethod(numeric(normals(500, 1)))).toBe('ks');
    expect(defaultMethod(numeric(normals(5000, 1)))).toBe('wasserstein');
    // A large reference against a small current sample: the test, not a distance biased by the sample's noise.
    expect(defaultMethod(numeric(normals(5000, 1)), numeric(normals(200, 2)))).toBe('ks');
    expect(defaultMethod(numeric(normals(5000, 1)), numeric(normals(5000, 2)))).toBe('wasserstein');
    expect(defaultMethod(categorical(['a', 'b']))).toBe('chi-square');
    expect(defaultMethod(categorical(Array.from({ length: 2000 }, (_, i) => (i % 2 ? 'a' : 'b'))))).toBe('jensen-shannon');
  });

  it('flags a shift of half a standard deviation and leaves the same distribution alone, with every method', () => {
    const referenceValues = normals(5000, 11);
    const edges = quantileEdges(numeric(referenceValues).sketch, 10);
    expect(edges).toHaveLength(9);
    const reference = numeric(referenceValues, edges);
    const same = numeric(normals(2000, 12), edges);
    const shifted = numeric(normals(2000, 13, 0.5), edges);
    for (const method of ['ks', 'wasserstein', 'psi', 'jensen-shannon'] as const) {
      expect(detectDrift(reference, same, { method }).drifted, `${method} on the same distribution`).toBe(false);
      expect(detectDrift(reference, shifted, { method }).drifted, `${method} on a shifted one`).toBe(true);
    }
    expect(detectDrift(reference, shifted).method).toBe('wasserstein');
    expect(detectDrift(reference, shifted).score).toBeCloseTo(0.5, 1);
  });

  it('raises at most 1% false alarms over 200 windows of an unchanged distribution, and catches a 0.5 SD shift in nearly every one', async () => {
    const reference = numeric(normals(2000, 500), undefined, 100);
    let alarms = 0;
    let caught = 0;
    for (let w = 0; w < 200; w++) {
      if (detectDrift(reference, numeric(normals(300, 1000 + w), undefined, 100), { method: 'ks' }).drifted) alarms++;
      if (detectDrift(reference, numeric(normals(300, 5000 + w, 0.5), undefined, 100), { method: 'ks' }).drifted) caught++;
    }
    expect(alarms).toBeLessThanOrEqual(2);
    expect(caught).toBeGreaterThanOrEqual(190);
  });

  it('flags a categorical feature whose mix changed, or that shows a new category', () => {
    const next = rng(3);
    const draw = (weights: number[], names: string[], n: number) =>
      Array.from({ length: n }, () => {
        let u = next();
        for (const [i, w] of weights.entries()) {
          if (u < w) return names[i] as string;
          u -= w;
        }
        return names[names.length - 1] as string;
      });
    const names = ['cat', 'dog', 'bird'];
    const reference = categorical(draw([0.5, 0.3, 0.2], names, 800));
    expect(detectDrift(reference, categorical(draw([0.5, 0.3, 0.2], names, 500))).drifted).toBe(false);
    expect(detectDrift(reference, categorical(draw([0.2, 0.3, 0.5], names, 500))).drifted).toBe(true);
    expect(detectDrift(reference, categorical([...draw([0.5, 0.3, 0.2], names, 450), ...Array(50).fill('fox')])).drifted).toBe(true);
  });
});

describe('profiles on the wire', () => {
  it('round-trips, and a numeric feature of 100,000 values costs under 4 KB of JSON (k = 200)', () => {
    const profile = numeric(normals(100_000, 21), [-1, 0, 1]);
    const wire = JSON.stringify(toWire(profile));
    expect(wire.length).toBeLessThan(4000);
    const back = fromWire(JSON.parse(wire)) as NumericProfile;
    expect(back.moments).toEqual(profile.moments);
    expect(back.histogram).toEqual(profile.histogram);
    expect(back.sketch.n).toBe(profile.sketch.n);
    expect(back.sketch.levels.flat().length).toBe(profile.sketch.levels.flat().length);
    expect(detectDrift(profile, back).drifted).toBe(false);
    const small = JSON.stringify(toWire(numeric([1, 2, 3])));
    expect(small.length).toBeLessThan(150);
    // Every size round-trips, from an empty window to one that never compacted to one that did.
    for (const n of [0, 1, 3, 199, 200, 5000]) {
      const window = numeric(normals(n, 40 + n), [0]);
      const back = fromWire(JSON.parse(JSON.stringify(toWire(window)))) as NumericProfile;
      expect(back.moments).toEqual(window.moments);
      expect(back.histogram).toEqual(window.histogram);
      // Sketch items travel as float32: the same items, rounded to 7 significant digits.
      expect(back.sketch).toEqual({ ...window.sketch, levels: window.sketch.levels.map((level) => level.map(Math.fround)) });
    }
    const labels = JSON.stringify(toWire(categorical(['a', 'b', 'a', null])));
    expect(fromWire(JSON.parse(labels))).toEqual(categorical(['a', 'b', 'a', null]));
  });

  it('refuses malformed profiles with a RangeError that names the field, and never anything else (property)', () => {
    const good = toWire(numeric(normals(1000, 2))) as unknown as Record<string, unknown>;
    const broken: [string, unknown][] = [
      ['not an object', 42],
      ['t must be', { ...good, t: 'x' }],
      ['m must hold 9', { ...good, m: [1] }],
      ['n must equal', { ...good, n: 5 }],
      ['level 0 is not whole', { ...good, l: ['AAA='] }],
      // Characters outside base64 (Node's decoder would skip them; atob throws): refused either way.
      ['level 0 is not base64', { ...good, l: ['AA@@AAAA'] }],
      ['level 0 is not base64', { ...good, l: ['AAAAA'] }],
      ['level 0 is not base64', { ...good, l: ['AA AA AA'] }],
      ['sketch weights', { ...good, l: [...(good.l as string[]), btoa('\0\0\0\0'.repeat(400))] }],
      ['k must be', { ...good, k: 2 }],
    ];
    for (const [message, wire] of broken) {
      expect(() => fromWire(wire), message).toThrow(new RegExp(message));
      expect(() => checkWire(wire), message).toThrow(new RegExp(message));
    }
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          fromWire(value);
        } catch (error) {
          expect(error).toBeInstanceOf(RangeError);
        }
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(good)), fc.jsonValue(), (key, value) => {
        try {
          const profile: FeatureProfile = fromWire({ ...good, [key]: value });
          expect(profile.kind).toBe('numeric');
        } catch (error) {
          expect(error).toBeInstanceOf(RangeError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('checkWire accepts exactly what fromWire parses and refuses the rest with the same message (property)', () => {
    const sized = [0, 1, 3, 199, 200, 5000].map((n) => toWire(numeric(normals(n, 7 + n), [0])) as unknown as Record<string, unknown>);
    const good = sized.at(-1) as Record<string, unknown>;
    const outcome = (read: (wire: unknown) => unknown, wire: unknown): string => {
      try {
        read(wire);
        return 'ok';
      } catch (error) {
        return `${(error as Error).name}: ${(error as Error).message}`;
      }
    };
    const same = (wire: unknown): void => {
      expect(outcome(checkWire, wire)).toBe(outcome(fromWire, wire));
    };
    for (const wire of sized) expect(outcome(checkWire, wire)).toBe('ok');
    expect(outcome(checkWire, toWire(categorical(['a', 'b', 'a', null])))).toBe('ok');
    // Values that are not finite, hidden in the bytes of a level: an infinity and a NaN.
    for (const bits of [0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001]) {
      const level = new DataView(new ArrayBuffer(8));
      level.setFloat32(0, 1.5, true);
      level.setUint32(4, bits, true);
      const wire = { ...good, l: [Buffer.from(level.buffer).toString('base64'), ...(good.l as string[]).slice(1)] };
      expect(outcome(checkWire, wire)).toMatch(/level 0 holds a value that is not finite/);
      same(wire);
    }
    // A level far longer than any before it, then a short one: the reused buffer grows, and holds nothing over.
    same({ ...good, l: [Buffer.alloc(40_000, 0x41).toString('base64')] });
    same(good);
    const level = fc.oneof(
      fc.base64String({ maxLength: 64 }),
      fc.string({ maxLength: 24 }),
      fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString('base64')),
    );
    fc.assert(
      fc.property(fc.array(level, { minLength: 0, maxLength: 4 }), (levels) => {
        same({ ...good, l: levels });
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(good)), fc.jsonValue(), (key, value) => {
        same({ ...good, [key]: value });
      }),
      { numRuns: 500 },
    );
    fc.assert(fc.property(fc.jsonValue(), same), { numRuns: 300 });
  });
});
