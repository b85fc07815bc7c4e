import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkTensorAgainstSpec, compareWithTolerance, decodeTensor, encodeTensor } from './index.ts';

describe('tensor data', () => {
  it('round-trips float32, int64 and bool tensors through base64url', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true }), { minLength: 1, maxLength: 64 }), (values) => {
        const data = Float32Array.from(values);
        const decoded = decodeTensor(encodeTensor('x', 'float32', [data.length], data));
        expect(Array.from(decoded.data as Float32Array)).toEqual(Array.from(data));
      }),
    );
    const sr = decodeTensor(encodeTensor('sr', 'int64', [], BigInt64Array.from([16000n])));
    expect(sr.data).toEqual(BigInt64Array.from([16000n]));
    expect(decodeTensor(encodeTensor('mask', 'bool', [2, 2], Uint8Array.from([1, 0, 0, 1]))).data).toEqual(Uint8Array.from([1, 0, 0, 1]));
  });

  it('refuses data whose length does not match dtype and shape with EF_TENSOR_INVALID', () => {
    const tensor = encodeTensor('x', 'float32', [4], new Float32Array(4));
    expect(() => decodeTensor({ ...tensor, shape: [5] })).toThrow(/holds 16 bytes; float32 \[5\] needs 20/);
    expect(() => encodeTensor('x', 'float32', [2, 3], new Float32Array(5))).toThrow(expect.objectContaining({ code: 'EF_TENSOR_INVALID' }));
  });

  it('checks a tensor against its declaration, symbolic dims taking any size', () => {
    const spec = { name: 'input', dtype: 'float32' as const, shape: [1, 'samples'] };
    expect(() => checkTensorAgainstSpec({ name: 'input', dtype: 'float32', shape: [1, 512] }, spec)).not.toThrow();
    expect(() => checkTensorAgainstSpec({ name: 'input', dtype: 'float32', shape: [2, 512] }, spec)).toThrow(
      /has shape \[2,512\], the model declares \[1,samples\]/,
    );
    expect(() => checkTensorAgainstSpec({ name: 'input', dtype: 'int64', shape: [1, 512] }, spec)).toThrow(
      /is int64, the model declares float32/,
    );
  });

  it('compares outputs within |a - e| <= absolute + relative * |e|', () => {
    const expected = Float32Array.from([1, 100, Number.NaN]);
    expect(compareWithTolerance(expected, Float32Array.from([1.0005, 100.05, Number.NaN]), { absolute: 1e-3, relative: 1e-3 }).ok).toBe(
      true,
    );
    const report = compareWithTolerance(expected, Float32Array.from([1, 100.5, Number.NaN]), { absolute: 1e-3, relative: 1e-3 });
    expect(report).toMatchObject({ ok: false, outside: 1, worst: 1 });
    expect(report.worstError).toBeCloseTo(0.5, 5);
    expect(report.maxAbsoluteError).toBeCloseTo(0.5, 5);
    expect(compareWithTolerance(Float32Array.from([Number.NaN]), Float32Array.from([0]), { absolute: 1, relative: 1 }).ok).toBe(false);
  });
});
