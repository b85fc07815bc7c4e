/**
 * The contract every Engine of @edgefleet/runtime passes (onnxruntime-node, onnxruntime-web WASM
 * in Node, WASM and WebGPU in Chromium), on real models: Silero VAD v5 and the PaddleOCR v4
 * detector shipped by npm packages, plus models the tests build (an MLP with a dynamic batch and
 * an int8-quantized layer). Typed by what it exercises (the runtime's Engine fits it).
 */
import type { Dtype, ExecutionProvider, TensorArray } from '@edgefleet/protocol';
import { describe, expect, it } from 'vitest';
import { PADDLE_OCR_DET_PATH, readModel, SILERO_VAD_V5_PATH, sileroFrame } from '../fixtures/index.ts';
import { int8LinearModel, mlpModel, seededValues } from '../models/index.ts';

type Tensor = { readonly dtype: Dtype; readonly shape: readonly number[]; readonly data: TensorArray | readonly string[] };
type Outputs = Record<string, Tensor>;

/** An engine as the runtime uses it. */
export interface EngineUnderTest {
  probe(): Promise<readonly { readonly executionProvider: ExecutionProvider; readonly available: boolean }[]>;
  createSession(
    model: Uint8Array,
    executionProvider: ExecutionProvider,
  ): Promise<{
    readonly inputNames: readonly string[];
    readonly outputNames: readonly string[];
    run(feeds: Readonly<Record<string, Tensor>>): Promise<Outputs>;
    release(): Promise<void>;
  }>;
}

export interface EngineHarness {
  readonly engine: EngineUnderTest;
  readonly executionProvider: ExecutionProvider;
  /**
   * Numbers this provider may differ by from onnxruntime's CPU kernels, beyond the float rounding
   * every check allows (SwiftShader's WebGPU: see TOOLCHAIN.md). Default 1e-5.
   */
  readonly tolerance?: number;
}

export interface EngineContractOptions {
  /**
   * How long one case may take (default: the suite's). A software WebGPU adapter runs the PaddleOCR
   * detector in about 17 s on one free core of this machine, and slower beside other work.
   */
  readonly timeoutMs?: number;
}

/** Silero VAD speech probability of the fixture frame, as computed by onnxruntime-web WASM in Node. */
export const SILERO_REFERENCE = { tolerance: 1e-4 };

/** The float data of an output, failing the test when the output is missing. */
function floats(outputs: Outputs, name: string): Float32Array {
  const output = outputs[name];
  if (!output) throw new Error(`no output "${name}"; got ${Object.keys(outputs).join(', ')}`);
  return output.data as Float32Array;
}

export function describeEngineContract(name: string, harness: () => Promise<EngineHarness>, options: EngineContractOptions = {}): void {
  describe(`Engine contract: ${name}`, { ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}) }, () => {
    it('offers its execution provider on this device', async () => {
      const { engine, executionProvider } = await harness();
      expect((await engine.probe()).find((p) => p.executionProvider === executionProvider)).toMatchObject({ available: true });
    });

    it('runs Silero VAD v5 and carries its recurrent state', async () => {
      const { engine, executionProvider } = await harness();
      const session = await engine.createSession(readModel(SILERO_VAD_V5_PATH), executionProvider);
      expect([...session.inputNames].sort()).toEqual(['input', 'sr', 'state']);
      const frame = sileroFrame();
      const first: Outputs = await session.run({
        input: { dtype: 'float32', shape: [1, 512], data: frame.input },
        state: { dtype: 'float32', shape: [2, 1, 128], data: frame.state },
        sr: { dtype: 'int64', shape: [], data: frame.sr },
      });
      const probability = floats(first, 'output')[0] ?? Number.NaN;
      expect(probability).toBeGreaterThanOrEqual(0);
      expect(probability).toBeLessThanOrEqual(1);
      expect(first.stateN?.shape).toEqual([2, 1, 128]);
      const second = await session.run({
        input: { dtype: 'float32', shape: [1, 512], data: frame.input },
        state: { dtype: 'float32', shape: [2, 1, 128], data: first.stateN?.data as Float32Array },
        sr: { dtype: 'int64', shape: [], data: frame.sr },
      });
      // The state matters: the same audio with the carried state gives another probability.
      expect(floats(second, 'output')[0]).not.toBe(probability);
      await session.release();
    });

    it('runs the PaddleOCR v4 detector on a 64x64 image and returns a probability map of the same size', async () => {
      const { engine, executionProvider } = await harness();
      const session = await engine.createSession(readModel(PADDLE_OCR_DET_PATH), executionProvider);
      const image = seededValues(3 * 64 * 64, 9);
      const { [session.outputNames[0] as string]: map } = await session.run({
        x: { dtype: 'float32', shape: [1, 3, 64, 64], data: image },
      });
      expect(map?.shape).toEqual([1, 1, 64, 64]);
      expect(Array.from(map?.data as Float32Array).every((v) => v >= 0 && v <= 1)).toBe(true);
      await session.release();
    });

    it('runs a built MLP with a dynamic batch, matching its reference within 1e-5', async () => {
      const { engine, executionProvider } = await harness();
      const model = mlpModel();
      const session = await engine.createSession(model.bytes, executionProvider);
      const input = seededValues(12, 4);
      const outputs = await session.run({ features: { dtype: 'float32', shape: [3, 4], data: input } });
      expect(outputs.scores?.shape).toEqual([3, 3]);
      const expected = model.reference(input);
      const tolerance = (await harness()).tolerance ?? 1e-5;
      for (const [i, value] of floats(outputs, 'scores').entries()) expect(Math.abs(value - (expected[i] ?? 0))).toBeLessThan(tolerance);
      await session.release();
    });

    it('runs an int8 dynamically quantized model (DynamicQuantizeLinear + MatMulInteger)', async () => {
      const { engine, executionProvider } = await harness();
      const model = int8LinearModel();
      const session = await engine.createSession(model.bytes, executionProvider);
      const input = seededValues(16, 5);
      const outputs = await session.run({ x: { dtype: 'float32', shape: [2, 8], data: input } });
      const expected = model.reference(input);
      for (const [i, value] of floats(outputs, 'y').entries()) expect(Math.abs(value - (expected[i] ?? 0))).toBeLessThan(0.05);
      await session.release();
    });

    it('runs two sessions at once: one created and run while another is still running', async () => {
      // What an app does when it tests a new version (or shadows a candidate) while serving the active one.
      const { engine, executionProvider } = await harness();
      const tolerance = (await harness()).tolerance ?? 1e-5;
      const vad = await engine.createSession(readModel(SILERO_VAD_V5_PATH), executionProvider);
      const frame = sileroFrame();
      const feeds = {
        input: { dtype: 'float32', shape: [1, 512], data: frame.input },
        state: { dtype: 'float32', shape: [2, 1, 128], data: frame.state },
        sr: { dtype: 'int64', shape: [], data: frame.sr },
      } as const;
      const alone = floats(await vad.run(feeds), 'output')[0] ?? Number.NaN;
      const model = mlpModel();
      const input = seededValues(12, 4);
      const running = Promise.all([vad.run(feeds), vad.run(feeds)]);
      const mlp = await engine.createSession(model.bytes, executionProvider);
      const [scores, [first, second]] = await Promise.all([
        mlp.run({ features: { dtype: 'float32', shape: [3, 4], data: input } }),
        running,
      ]);
      const expected = model.reference(input);
      for (const [i, value] of floats(scores, 'scores').entries()) expect(Math.abs(value - (expected[i] ?? 0))).toBeLessThan(tolerance);
      expect(Math.abs((floats(first, 'output')[0] ?? Number.NaN) - alone)).toBeLessThan(tolerance);
      expect(Math.abs((floats(second, 'output')[0] ?? Number.NaN) - alone)).toBeLessThan(tolerance);
      await Promise.all([vad.release(), mlp.release()]);
    });

    it('refuses bytes that are not an ONNX model with EF_MODEL_INVALID', async () => {
      const { engine, executionProvider } = await harness();
      await expect(engine.createSession(Uint8Array.from([1, 2, 3, 4, 5]), executionProvider)).rejects.toMatchObject({
        code: 'EF_MODEL_INVALID',
      });
      const truncated = readModel(SILERO_VAD_V5_PATH).subarray(0, 10_000);
      await expect(engine.createSession(truncated, executionProvider)).rejects.toMatchObject({ code: 'EF_MODEL_INVALID' });
    });

    it('reports an engine failure while running as EF_INFERENCE_FAILED', async () => {
      const { engine, executionProvider } = await harness();
      const session = await engine.createSession(mlpModel().bytes, executionProvider);
      // A wrong inner dimension passes no declared-shape check here: the engine itself must fail cleanly.
      await expect(session.run({ features: { dtype: 'float32', shape: [1, 5], data: new Float32Array(5) } })).rejects.toMatchObject({
        code: 'EF_INFERENCE_FAILED',
      });
      await session.release();
    });
  });
}
