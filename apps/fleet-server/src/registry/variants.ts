/**
 * Variants at registration: other builds of the uploaded model (uploaded as `variant.<name>` parts,
 * or the int8 one produced here with `quantize: "int8"`), each checked against the reference before
 * the manifest lists it:
 *
 * - it parses and loads in onnxruntime, with the reference's inputs and outputs (names, types);
 * - on the golden inputs it answers like the reference: its largest difference is measured, and
 *   its tolerance (what the device's acceptance test allows it) is the one given, which it must
 *   meet, or else that measurement with headroom (x1.5) on top of the reference's own tolerance,
 *   provided it is a rounding difference (at most 10% of the outputs' magnitude: other weights are
 *   another model, refused unless a tolerance says the difference is intended);
 * - its precision is the one given, or what its file says (integer operators: int8; float16
 *   weights: float16), and its execution providers the ones given, or for int8 the CPU ones
 *   (onnxruntime's WebGPU provider has no integer kernels).
 */
import { open, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  decodeTensor,
  EdgefleetError,
  type ExecutionProvider,
  type GoldenVector,
  type ManifestVariant,
  type Tolerance,
  type VARIANT_PRECISIONS,
} from '@edgefleet/protocol';
import type { StagedUpload } from '../artifacts/store.ts';
import type { ServerContext } from '../context.ts';
import { type OnnxSummary, readOnnxSummary } from './onnx.ts';
import { quantizeDynamicInt8 } from './quantize.ts';

export interface VariantSettings {
  readonly precision?: (typeof VARIANT_PRECISIONS)[number];
  readonly executionProviders?: ExecutionProvider[];
  readonly tolerance?: Tolerance;
}

/** What registration found out about a variant (kept in the version's metadata, shown by the API). */
export interface VariantReport {
  readonly name: string;
  readonly precision: ManifestVariant['precision'];
  readonly size: number;
  /** Its size over the reference's. */
  readonly sizeRatio: number;
  /** Its largest absolute difference from the reference's outputs on the golden inputs (none without golden vectors). */
  readonly maxAbsoluteError?: number;
  /** "uploaded", or "quantized" here (dynamic int8). */
  readonly source: 'uploaded' | 'quantized';
  /** Quantized here: the layers rewritten, and those left in float with why. */
  readonly quantized?: { readonly layers: number; readonly weights: number; readonly skipped: number };
}

const HEADROOM = 1.5;
/** Without a tolerance given, a variant may differ by at most this share of the outputs' magnitude. */
const MAX_UNBOUNDED_ERROR = 0.1;

function variantError(name: string, message: string): never {
  throw new EdgefleetError('EF_VARIANT_INVALID', `variant "${name}": ${message}`, { details: { variant: name } });
}

/** The int8 variant of the staged reference, staged in turn. */
export async function quantizeStaged(
  context: ServerContext,
  reference: StagedUpload,
): Promise<{ staged: StagedUpload; layers: number; weights: number; skipped: number }> {
  const result = quantizeDynamicInt8(await readFile(reference.path));
  const staged = await context.artifacts.stage(Readable.from([result.bytes]), Number.MAX_SAFE_INTEGER);
  return { staged, layers: result.quantized, weights: result.weights, skipped: result.skipped.length };
}

function sameSignature(name: string, reference: OnnxSummary, variant: OnnxSummary): void {
  for (const [what, ours, theirs] of [
    ['input', reference.inputs, variant.inputs],
    ['output', reference.outputs, variant.outputs],
  ] as const) {
    const describe = (list: typeof ours) => list.map((t) => `${t.name} ${t.dtype}`).join(', ');
    if (describe(ours) !== describe(theirs)) {
      variantError(
        name,
        `its ${what}s are ${describe(theirs) || 'none'}; the model's are ${describe(ours)} (a float16 build must keep float32 inputs and outputs: convert with keep_io_types)`,
      );
    }
  }
}

/**
 * The largest absolute difference between the reference's golden outputs and the variant's, and
 * the largest magnitude among the reference's outputs (what the difference is measured against).
 */
function largestDifference(
  name: string,
  golden: readonly GoldenVector[],
  produced: readonly GoldenVector[],
): { worst: number; scale: number } {
  let worst = 0;
  let scale = 0;
  golden.forEach((vector, index) => {
    for (const expected of vector.outputs) {
      const actual = produced[index]?.outputs.find((t) => t.name === expected.name);
      if (!actual) variantError(name, `gives no output "${expected.name}" on golden input ${index}`);
      const [a, b] = [decodeTensor(expected), decodeTensor(actual)];
      if (a.shape.join('x') !== b.shape.join('x')) {
        variantError(
          name,
          `output "${expected.name}" has shape [${b.shape.join(', ')}] on golden input ${index}; the model's has [${a.shape.join(', ')}]`,
        );
      }
      for (let i = 0; i < a.data.length; i++) {
        scale = Math.max(scale, Math.abs(Number(a.data[i])));
        const difference = Math.abs(Number(a.data[i]) - Number(b.data[i]));
        // NaN where the reference has a number is as far as it gets.
        worst = Math.max(worst, Number.isNaN(difference) ? Number.POSITIVE_INFINITY : difference);
      }
    }
  });
  return { worst, scale };
}

/** Checks one staged variant against the reference; its manifest entry and what was measured. */
export async function checkVariant(
  context: ServerContext,
  input: {
    readonly name: string;
    readonly staged: StagedUpload;
    readonly source: VariantReport['source'];
    readonly quantized?: VariantReport['quantized'];
    readonly settings: VariantSettings | undefined;
    readonly reference: { readonly summary: OnnxSummary; readonly size: number; readonly tolerance: Tolerance };
    readonly vectors: readonly GoldenVector[];
  },
): Promise<{ entry: ManifestVariant; report: VariantReport }> {
  const { name, staged, settings, reference, vectors } = input;
  const handle = await open(staged.path, 'r');
  const summary = await readOnnxSummary(handle)
    .catch((error: unknown) => variantError(name, (error as Error).message))
    .finally(() => handle.close());
  sameSignature(name, reference.summary, summary);
  let produced: GoldenVector[];
  try {
    produced = await context.modelCheck.check(
      await readFile(staged.path),
      vectors.map((v) => v.inputs),
      reference.summary.outputs,
    );
  } catch (error) {
    variantError(name, (error as Error).message);
  }
  const difference = vectors.length > 0 ? largestDifference(name, vectors, produced) : undefined;
  const measured = difference?.worst;
  let tolerance: Tolerance;
  if (settings?.tolerance) {
    tolerance = settings.tolerance;
    // Every golden output must be within the tolerance given, as the device will check.
    vectors.forEach((vector, index) => {
      for (const expected of vector.outputs) {
        const [a, b] = [decodeTensor(expected), decodeTensor(produced[index]?.outputs.find((t) => t.name === expected.name) ?? expected)];
        for (let i = 0; i < a.data.length; i++) {
          const want = Number(a.data[i]);
          const got = Number(b.data[i]);
          if (!(Math.abs(got - want) <= tolerance.absolute + tolerance.relative * Math.abs(want))) {
            variantError(
              name,
              `output "${expected.name}"[${i}] on golden input ${index} is ${got}, the model's ${want}: over its tolerance (absolute ${tolerance.absolute}, relative ${tolerance.relative}); widen the tolerance or fix the build`,
            );
          }
        }
      }
    });
  } else {
    tolerance =
      measured === undefined
        ? reference.tolerance
        : { absolute: Math.min(1e9, reference.tolerance.absolute + measured * HEADROOM), relative: reference.tolerance.relative };
    if (!Number.isFinite(tolerance.absolute)) variantError(name, 'gives NaN or infinity where the model gives a number');
    // A build of the same model differs by rounding; another model (other weights) by far more.
    if (difference && difference.worst > MAX_UNBOUNDED_ERROR * difference.scale + reference.tolerance.absolute) {
      variantError(
        name,
        `differs from the model by up to ${difference.worst.toPrecision(3)} on the golden inputs, whose outputs reach ${difference.scale.toPrecision(3)}: that is not the same model in another precision. Give its "tolerance" in "variants" if the difference is intended`,
      );
    }
  }
  const formats = new Set(summary.quantization.formats);
  const integer = ['dynamic', 'integer-ops', 'qdq', 'qlinear'].some((f) => formats.has(f as never));
  const precision =
    settings?.precision ??
    (integer && formats.has('float16') ? 'mixed' : integer ? 'int8' : formats.has('float16') ? 'float16' : 'float32');
  const executionProviders: ExecutionProvider[] = settings?.executionProviders ?? (integer ? ['wasm', 'cpu'] : ['webgpu', 'wasm', 'cpu']);
  const entry: ManifestVariant = {
    name,
    sha256: staged.sha256,
    size: staged.size,
    mediaType: 'application/x-onnx',
    precision,
    executionProviders,
    tolerance,
  };
  return {
    entry,
    report: {
      name,
      precision,
      size: staged.size,
      sizeRatio: Math.round((staged.size / reference.size) * 10_000) / 10_000,
      ...(measured !== undefined ? { maxAbsoluteError: measured } : {}),
      source: input.source,
      ...(input.quantized ? { quantized: input.quantized } : {}),
    },
  };
}
