/**
 * The on-device acceptance test: run every golden vector on the session that will really serve,
 * and compare each output within the manifest's tolerance.
 */
import { compareWithTolerance, decodeTensor, type GoldenVector, type Tolerance } from '@edgefleet/protocol';
import type { EngineSession, Feeds } from '../engine/types.ts';

export interface AcceptanceResult {
  readonly passed: boolean;
  /** Why it failed: which vector, which output, by how much. */
  readonly reason?: string;
  readonly maxAbsoluteError: number;
}

export async function runAcceptance(
  session: EngineSession,
  vectors: readonly GoldenVector[],
  tolerance: Tolerance,
): Promise<AcceptanceResult> {
  let maxAbsoluteError = 0;
  for (const [index, vector] of vectors.entries()) {
    const feeds: Record<string, Feeds[string]> = {};
    for (const input of vector.inputs) {
      const decoded = decodeTensor(input);
      feeds[input.name] = { dtype: decoded.dtype, shape: decoded.shape, data: decoded.data };
    }
    let outputs: Awaited<ReturnType<EngineSession['run']>>;
    try {
      outputs = await session.run(feeds);
    } catch (error) {
      return { passed: false, reason: `golden vector ${index}: the run failed (${(error as Error).message})`, maxAbsoluteError };
    }
    for (const expected of vector.outputs) {
      const actual = outputs[expected.name];
      if (!actual) return { passed: false, reason: `golden vector ${index}: no output "${expected.name}"`, maxAbsoluteError };
      const decoded = decodeTensor(expected);
      if (actual.shape.join(',') !== decoded.shape.join(',')) {
        return {
          passed: false,
          reason: `golden vector ${index}: output "${expected.name}" has shape [${actual.shape.join(',')}], expected [${decoded.shape.join(',')}]`,
          maxAbsoluteError,
        };
      }
      const report = compareWithTolerance(decoded.data, actual.data as typeof decoded.data, tolerance);
      maxAbsoluteError = Math.max(maxAbsoluteError, report.maxAbsoluteError);
      if (!report.ok) {
        // The worst element outside the tolerance, with its own numbers: the one to look at first.
        const at = report.worst;
        return {
          passed: false,
          reason: `golden vector ${index}: output "${expected.name}"[${at}] is ${String(actual.data[at])}, expected ${String(decoded.data[at])} (|error| ${report.worstError.toExponential(3)}; ${report.outside} of ${decoded.data.length} elements outside the tolerance ${tolerance.absolute} + ${tolerance.relative}·|expected|)`,
          maxAbsoluteError,
        };
      }
    }
  }
  return { passed: true, maxAbsoluteError };
}
