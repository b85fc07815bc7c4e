/**
 * Simulated inference telemetry: windows of runs folded by the runtime's own WindowProfile (so the
 * features, their names and sketches are those of a real device) from inputs drawn from N(0, 1)
 * per element and outputs drawn uniformly; a shift added to one input (or one of its columns) is
 * the way one group of devices starts seeing another world.
 */
import type { ManifestPayload } from '@edgefleet/protocol';
import { type ClosedWindow, WindowProfile } from '@edgefleet/runtime/core';

export interface SimulatedTelemetry {
  /** Every `windowMs` each online device closes a window of `runs` runs of each active model. */
  readonly windowMs: number;
  readonly runs: number;
  /** Added to the values of `shiftInput` (default the first input) on the devices it returns non-zero for. */
  readonly shift?: (deviceId: string) => number;
  readonly shiftInput?: string;
  /** Only this column (index in the last dimension) of the input shifts; all of it when absent. */
  readonly shiftColumn?: number;
}

/** A concrete shape for a declared one: symbolic dimensions become 1 (the last one 16), at most 4,096 elements. */
function concreteShape(shape: readonly (number | string)[]): number[] {
  const dims = shape.map((d, i) => (typeof d === 'number' ? d : i === shape.length - 1 ? 16 : 1));
  let size = dims.reduce((a, b) => a * b, 1);
  for (let i = 0; i < dims.length && size > 4096; i++) {
    size /= dims[i] as number;
    dims[i] = 1;
  }
  return dims;
}

/** One window of simulated runs, folded exactly as the runtime folds real ones. */
export function simulatedWindow(
  manifest: ManifestPayload,
  start: number,
  end: number,
  spec: Pick<SimulatedTelemetry, 'runs' | 'shiftInput' | 'shiftColumn'>,
  shift: number,
  random: () => number,
): ClosedWindow {
  const profile = new WindowProfile({ name: manifest.name, version: manifest.version }, start, manifest.telemetry);
  const shifted = spec.shiftInput ?? manifest.model.inputs[0]?.name;
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const tensor = (dtype: string, shape: readonly (number | string)[], fill: (column: number) => number) => {
    const dims = concreteShape(shape);
    const size = dims.reduce((a, b) => a * b, 1);
    const width = dims.at(-1) ?? 1;
    if (dtype === 'int64') return { dtype: 'int64' as const, shape: dims, data: BigInt64Array.from({ length: size }, () => 16_000n) };
    return { dtype: 'float32' as const, shape: dims, data: Float32Array.from({ length: size }, (_, i) => fill(i % width)) };
  };
  const offset = (input: string, column: number) =>
    input === shifted && (spec.shiftColumn === undefined || spec.shiftColumn === column) ? shift : 0;
  for (let run = 0; run < spec.runs; run++) {
    const feeds = Object.fromEntries(
      manifest.model.inputs.map((input) => [
        input.name,
        tensor(input.dtype, input.shape, (column) => normal() + offset(input.name, column)),
      ]),
    );
    const outputs = Object.fromEntries(manifest.model.outputs.map((output) => [output.name, tensor(output.dtype, output.shape, random)]));
    profile.recordRun(feeds, outputs, 0.5 + random());
  }
  return profile.close(end);
}
