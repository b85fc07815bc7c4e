/**
 * Telemetry cost on `run`, focused (`pnpm bench:telemetry [rounds]`, default 4000): four runtimes
 * of the same model in one process, two with telemetry on and two off, created in the order
 * on, off, off, on so that the few percent a session gains or loses from its creation order cancel
 * out, run in rotation; the cost is the geometric mean of the two on/off p50 ratios. Silero VAD
 * (0.13-0.3 ms a run, the hardest case for a fixed per-run cost) with the default features and with
 * two declared ones, on onnxruntime-node and on onnxruntime-web WASM. Results replace the telemetry
 * section of docs/BENCHMARKS.md.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TelemetrySpec } from '@edgefleet/protocol';
import { createTestKeys } from '@edgefleet/protocol/testing';
import { createNativeEngine, createRuntime, createWasmEngine, type Engine } from '@edgefleet/runtime';
import { manifestFor, readModel, SILERO_INPUTS, SILERO_OUTPUTS, SILERO_VAD_V5_PATH, sileroFrame } from '@edgefleet/test-utils';

const [rounds = 4000] = process.argv.slice(2).map(Number);
const WARMUP = 300;
const keys = createTestKeys(Date.now() - 60_000);
const bytes = readModel(SILERO_VAD_V5_PATH);
const frame = sileroFrame(2);
const feeds = {
  input: { dtype: 'float32' as const, shape: [1, 512], data: frame.input },
  state: { dtype: 'float32' as const, shape: [2, 1, 128], data: frame.state },
  sr: { dtype: 'int64' as const, shape: [] as number[], data: frame.sr },
};
const DECLARED: TelemetrySpec = {
  features: [
    { name: 'loudness', source: 'input', tensor: 'input', kind: 'summary', stat: 'energy' },
    { name: 'speech', source: 'output', tensor: 'output', kind: 'column', index: 0 },
  ],
};
const p50 = (samples: number[]) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)] as number;

async function measure(engine: Engine, ep: 'cpu' | 'wasm', telemetry?: TelemetrySpec) {
  const manifest = manifestFor({
    name: 'silero-vad',
    version: '1.0.0',
    bytes,
    inputs: SILERO_INPUTS,
    outputs: SILERO_OUTPUTS,
    key: keys.manifest,
    executionProviders: [ep],
    ...(telemetry ? { telemetry } : {}),
  });
  const make = async (enabled: boolean) => {
    const runtime = await createRuntime({
      dir: await mkdtemp(join(tmpdir(), 'edgefleet-bench-tele-')),
      engines: [engine],
      trust: keys.trust,
      telemetry: { enabled },
    });
    await runtime.install(manifest, bytes);
    return runtime;
  };
  const runtimes = [await make(true), await make(false), await make(false), await make(true)];
  const times: number[][] = runtimes.map(() => []);
  for (let i = 0; i < WARMUP + rounds; i++) {
    for (let j = 0; j < runtimes.length; j++) {
      const k = (i + j) % runtimes.length;
      const started = performance.now();
      await runtimes[k]?.run('silero-vad', feeds);
      if (i >= WARMUP) times[k]?.push(performance.now() - started);
    }
  }
  for (const runtime of runtimes) await runtime.close();
  const [onA, offA, offB, onB] = times.map(p50) as [number, number, number, number];
  return { on: Math.sqrt(onA * onB), off: Math.sqrt(offA * offB), cost: Math.sqrt((onA / offA) * (onB / offB)) };
}

const started = performance.now();
const rows: string[] = [];
const engines: [string, Engine | undefined, 'cpu' | 'wasm'][] = [
  ['onnxruntime-node', await createNativeEngine(1), 'cpu'],
  ['onnxruntime-web (WASM)', createWasmEngine(1), 'wasm'],
];
for (const [label, engine, ep] of engines) {
  if (!engine) continue;
  for (const [features, spec] of [
    ['default (5 tensors)', undefined],
    ['declared (2 features)', DECLARED],
  ] as [string, TelemetrySpec | undefined][]) {
    const result = await measure(engine, ep, spec);
    rows.push(
      `| ${label} | ${features} | ${rounds} | ${result.off.toFixed(3)} | ${result.on.toFixed(3)} | ${((result.on - result.off) * 1000).toFixed(1)} µs | ${result.cost >= 1 ? '+' : ''}${((result.cost - 1) * 100).toFixed(1)}% |`,
    );
    process.stdout.write(`${rows.at(-1)}\n`);
  }
}
const section = [
  '<!-- bench:telemetry:start -->',
  '## Telemetry on `run`, focused',
  '',
  `Command: \`pnpm bench:telemetry ${rounds}\` (bench/telemetry.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; took ${Math.round((performance.now() - started) / 1000)} s.`,
  '',
  'Silero VAD v5 (512 samples), one thread. Four runtimes of the model in one process, created in the order telemetry on, off, off, on and run in rotation; p50s are the geometric means of each pair, the cost the geometric mean of the two on/off ratios (creation order shifts a session by a few percent; this cancels it). Target: ≤ 3%.',
  '',
  '| engine | telemetry features | rounds | p50 off (ms) | p50 on (ms) | difference | cost |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...rows,
  '<!-- bench:telemetry:end -->',
].join('\n');
const path = fileURLToPath(new URL('../docs/BENCHMARKS.md', import.meta.url));
const current = await readFile(path, 'utf8');
const pattern = /<!-- bench:telemetry:start -->[\s\S]*<!-- bench:telemetry:end -->/;
await writeFile(path, pattern.test(current) ? current.replace(pattern, section) : `${current.trimEnd()}\n\n${section}\n`);
process.stdout.write(`${section}\n`);
process.exit(0);
