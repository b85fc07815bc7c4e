/**
 * Telemetry cost on `run`, focused (`pnpm bench:telemetry [rounds]`, default 6000). One runtime
 * per case; each round runs the same feeds on the same session three times in a freshly shuffled
 * order: counted by telemetry, left out of it (`run(…, { telemetry: false })`), and left out again
 * (the control: what two identical calls differ by, i.e. the noise floor). Same session, same
 * memory, same moment: only the telemetry differs, so the cost is the ratio of the p50s. Silero
 * VAD (0.12-0.4 ms a run, the hardest case for a fixed per-run cost) with the default features and
 * with two declared ones, with the default time sample (`profileEveryMs`) and with every run
 * profiled, on onnxruntime-node and on onnxruntime-web WASM. Results replace the telemetry section
 * of docs/BENCHMARKS.md.
 */
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TelemetrySpec } from '@edgefleet/protocol';
import { createNativeEngine, createRuntime, createWasmEngine, type Engine } from '@edgefleet/runtime';
import { manifestFor, readModel, SILERO_INPUTS, SILERO_OUTPUTS, SILERO_VAD_V5_PATH, sileroFrame, splitmix } from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { writeBenchmarkSection } from './benchmarks-doc.ts';

const [rounds = 6000] = process.argv.slice(2).map(Number);
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
const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;

async function measure(engine: Engine, ep: 'cpu' | 'wasm', telemetry: TelemetrySpec | undefined, profileEveryMs?: number) {
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
  const runtime = await createRuntime({
    dir: await mkdtemp(join(tmpdir(), 'edgefleet-bench-tele-')),
    engines: [engine],
    trust: keys.trust,
    ...(profileEveryMs === undefined ? {} : { telemetry: { profileEveryMs } }),
  });
  await runtime.install(manifest, bytes);
  // Runs whose features were profiled (the time sample): one value per profiled run in any numeric feature.
  const profiled = { runs: 0, sampled: 0 };
  runtime.on('telemetry-window', (window) => {
    const feature = window.features.find((f) => f.profile.t === 'n');
    profiled.runs += window.runs;
    profiled.sampled += feature?.profile.t === 'n' ? Number(feature.profile.m[0]) : 0;
  });
  runtime.flushTelemetry(); // the acceptance test's runs are not part of it
  profiled.runs = 0;
  profiled.sampled = 0;
  const calls = [
    () => runtime.run('silero-vad', feeds),
    () => runtime.run('silero-vad', feeds, { telemetry: false }),
    () => runtime.run('silero-vad', feeds, { telemetry: false }),
  ];
  const times: number[][] = calls.map(() => []);
  const random = splitmix(2026);
  const order = calls.map((_, k) => k);
  for (let i = 0; i < WARMUP + rounds; i++) {
    for (let j = order.length - 1; j > 0; j--) {
      const swap = Math.floor(random() * (j + 1));
      [order[j], order[swap]] = [order[swap] as number, order[j] as number];
    }
    for (const k of order) {
      const started = performance.now();
      await calls[k]?.();
      if (i >= WARMUP) times[k]?.push(performance.now() - started);
    }
  }
  await runtime.close(); // flushes the open window
  const [on, off, control] = times.map(p50) as [number, number, number];
  return { on, off, cost: on / off, control: control / off, profiledShare: profiled.sampled / profiled.runs };
}

const started = performance.now();
const rows: string[] = [];
const engines: [string, Engine | undefined, 'cpu' | 'wasm'][] = [
  ['onnxruntime-node', await createNativeEngine(1), 'cpu'],
  ['onnxruntime-web (WASM)', createWasmEngine(1), 'wasm'],
];
for (const [label, engine, ep] of engines) {
  if (!engine) continue;
  for (const [features, spec, profileEveryMs] of [
    ['default (5 tensors)', undefined, undefined],
    ['declared (2 features)', DECLARED, undefined],
    ['default, every run profiled', undefined, 0],
  ] as [string, TelemetrySpec | undefined, number | undefined][]) {
    const result = await measure(engine, ep, spec, profileEveryMs);
    rows.push(
      `| ${label} | ${features} | ${rounds} | ${(result.profiledShare * 100).toFixed(0)}% | ${result.off.toFixed(3)} | ${result.on.toFixed(3)} | ${((result.on - result.off) * 1000).toFixed(1)} µs | ${pct(result.cost)} | ${pct(result.control)} |`,
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
  'Silero VAD v5 (512 samples), one thread. One runtime per row; each round runs the same feeds on the same session three times in a shuffled order: counted by telemetry, left out of it (`{ telemetry: false }`), and left out again as the control (the noise floor: two identical calls). Cost: p50 counted over p50 left out. Runs profiled: the share of counted runs whose features were profiled (the `profileEveryMs` time sample, 5 ms by default; each counted run here comes about every 0.4–1.2 ms). Target: ≤ 3%.',
  '',
  '| engine | telemetry features | rounds | runs profiled | p50 off (ms) | p50 on (ms) | difference | cost | control |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows,
  '<!-- bench:telemetry:end -->',
].join('\n');
await writeBenchmarkSection('telemetry', section);
process.stdout.write(`${section}\n`);
process.exit(0);
