import { encodeTensor } from '@edgefleet/protocol';
import { describe, expect, it } from 'vitest';
import type { EngineSession, Outputs } from '../engine/types.ts';
import { runAcceptance } from './index.ts';

/** A session that answers fixed outputs: the comparison is what is under test here. */
function answering(outputs: Outputs): EngineSession {
  return {
    executionProvider: 'wasm',
    inputNames: ['x'],
    outputNames: Object.keys(outputs),
    run: async () => outputs,
    release: async () => undefined,
  };
}

const vector = (expected: number[]) => ({
  inputs: [encodeTensor('x', 'float32', [1], Float32Array.from([1]))],
  outputs: [encodeTensor('y', 'float32', [expected.length], Float32Array.from(expected))],
});

describe('acceptance test', () => {
  it('names the worst element outside the tolerance: its index, value, expected value and error', async () => {
    // Element 0 is a little off, element 2 far off: the report is about element 2.
    const session = answering({ y: { dtype: 'float32', shape: [4], data: Float32Array.from([0.1, 0, 7.5, 0]) } });
    const result = await runAcceptance(session, [vector([0, 0, 0.5, 0])], { absolute: 0.01, relative: 0 });
    expect(result.passed).toBe(false);
    expect(result.reason).toMatch(/golden vector 0: output "y"\[2\] is 7\.5, expected 0\.5 \(\|error\| 7\.000e\+0/);
    expect(result.reason).toMatch(/2 of 4 elements outside the tolerance 0\.01 \+ 0·\|expected\|/);
    expect(result.maxAbsoluteError).toBe(7);
  });

  it('judges each element by its own tolerance: a large error within a large relative tolerance is not the worst', async () => {
    // Element 0: |error| 5 on an expected 1000 (relative 1% allows 10). Element 1: |error| 0.5 on 0, outside.
    const session = answering({ y: { dtype: 'float32', shape: [2], data: Float32Array.from([1005, 0.5]) } });
    const result = await runAcceptance(session, [vector([1000, 0])], { absolute: 0.01, relative: 0.01 });
    expect(result.reason).toMatch(/output "y"\[1\] is 0\.5, expected 0 \(\|error\| 5\.000e-1/);
    expect(result.reason).toMatch(/1 of 2 elements/);
  });

  it('counts NaN where a number was expected as the worst', async () => {
    const session = answering({ y: { dtype: 'float32', shape: [2], data: Float32Array.from([3, Number.NaN]) } });
    const result = await runAcceptance(session, [vector([0, 1])], { absolute: 0.01, relative: 0 });
    expect(result.reason).toMatch(/output "y"\[1\] is NaN, expected 1/);
  });
});
