/**
 * What a shadow costs the caller (`pnpm bench:shadow [blocks]`, default 30): the active version's
 * p50 and p99 while a candidate runs in shadow, against the same runtime, session and moment with
 * the shadow's rate at 0. An app that leaves the device idle between calls (1 ms, as an app
 * processing frames does; and 5 ms): the shadow runs in those gaps, never while a call is in flight. Blocks
 * of 100 calls, the modes in a freshly shuffled order per block: shadow on, off, and off again
 * (the control: the noise floor). Silero VAD v5 with a candidate of the same bytes (so every
 * sample is compared: the whole cost), on onnxruntime-node and onnxruntime-web (WASM). Results
 * replace the shadow section of docs/BENCHMARKS.md. Target: ≤ 3% at p50.
 */
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNativeEngine, createRuntime, createWasmEngine, type Engine } from '@edgefleet/runtime';
import { manifestFor, readModel, SILERO_INPUTS, SILERO_OUTPUTS, SILERO_VAD_V5_PATH, sileroFrame, splitmix } from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { writeBenchmarkSection } from './benchmarks-doc.ts';

const [blocks = 30] = process.argv.slice(2).map(Number);
const CALLS = 100;
const keys = createTestKeys(Date.now() - 60_000);
const bytes = readModel(SILERO_VAD_V5_PATH);
const frame = sileroFrame(2);
const feeds = {
  input: { dtype: 'float32' as const, shape: [1, 512], data: frame.input },
  state: { dtype: 'float32' as const, shape: [2, 1, 128], data: frame.state },
  sr: { dtype: 'int64' as const, shape: [] as number[], data: frame.sr },
};
const quantile = (samples: number[], q: number) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length * q)] as number;
const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
const idle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function measure(engine: Engine, ep: 'cpu' | 'wasm', rate: number, idleMs: number) {
  const release = (version: string) =>
    manifestFor({
      name: 'vad',
      version,
      bytes,
      inputs: SILERO_INPUTS,
      outputs: SILERO_OUTPUTS,
      key: keys.manifest,
      executionProviders: [ep],
    });
  const runtime = await createRuntime({
    dir: await mkdtemp(join(tmpdir(), 'edgefleet-bench-shadow-')),
    engines: [engine],
    trust: keys.trust,
  });
  await runtime.install(release('5.0.0'), bytes);
  await runtime.installShadow(release('5.0.1'), bytes, { rate: 0 });
  const shadow = { runs: 0, skipped: 0 };
  runtime.on('telemetry-window', (window) => {
    shadow.runs += window.shadow?.runs ?? 0;
    shadow.skipped += window.shadow?.skipped ?? 0;
  });
  const times: Record<'on' | 'off' | 'control', number[]> = { on: [], off: [], control: [] };
  const random = splitmix(2026);
  const modes = ['on', 'off', 'control'] as const;
  for (let b = -2; b < blocks; b++) {
    const order = [...modes];
    for (let j = order.length - 1; j > 0; j--) {
      const swap = Math.floor(random() * (j + 1));
      [order[j], order[swap]] = [order[swap] as (typeof modes)[number], order[j] as (typeof modes)[number]];
    }
    if (b === 0) {
      runtime.flushTelemetry(); // the warm-up blocks' samples are not counted
      shadow.runs = 0;
      shadow.skipped = 0;
    }
    for (const mode of order) {
      await runtime.installShadow(release('5.0.1'), bytes, { rate: mode === 'on' ? rate : 0 });
      for (let i = 0; i < CALLS; i++) {
        const started = performance.now();
        await runtime.run('vad', feeds);
        if (b >= 0) times[mode].push(performance.now() - started);
        await idle(idleMs);
      }
    }
  }
  await runtime.close();
  const p = (mode: keyof typeof times, q: number) => quantile(times[mode], q);
  return {
    p50: { on: p('on', 0.5), off: p('off', 0.5), control: p('control', 0.5) },
    p99: { on: p('on', 0.99), off: p('off', 0.99), control: p('control', 0.99) },
    shadow,
  };
}

const started = performance.now();
const rows: string[] = [];
const engines: [string, Engine | undefined, 'cpu' | 'wasm'][] = [
  ['onnxruntime-node', await createNativeEngine(1), 'cpu'],
  ['onnxruntime-web (WASM)', createWasmEngine(1), 'wasm'],
];
for (const [label, engine, ep] of engines) {
  if (!engine) continue;
  for (const [rate, idleMs] of [
    [0.1, 1],
    [1, 1],
    [0.1, 5],
    [1, 5],
  ] as const) {
    const r = await measure(engine, ep, rate, idleMs);
    rows.push(
      `| ${label} | ${rate} | ${idleMs} ms | ${blocks * CALLS} | ${r.shadow.runs} / ${r.shadow.skipped} | ${r.p50.off.toFixed(3)} | ${r.p50.on.toFixed(3)} | ${pct(r.p50.on / r.p50.off)} | ${pct(r.p50.control / r.p50.off)} | ${r.p99.off.toFixed(3)} | ${r.p99.on.toFixed(3)} | ${pct(r.p99.on / r.p99.off)} | ${pct(r.p99.control / r.p99.off)} |`,
    );
    process.stdout.write(`${rows.at(-1)}\n`);
  }
}
const section = [
  '<!-- bench:shadow:start -->',
  '## A shadow candidate: what it costs the caller',
  '',
  `Command: \`pnpm bench:shadow ${blocks}\` (bench/shadow.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; took ${Math.round((performance.now() - started) / 1000)} s.`,
  '',
  'Silero VAD v5 (512 samples), one thread, a candidate of the same bytes in shadow (every sample compared: its whole cost). The app calls, then leaves the device idle 1 ms (an app calling almost back to back: the shadow waits for a quiet spell twice as long as a run, 2 ms at least, so most samples are skipped) or 5 ms (an app processing frames: the shadow runs in the gaps). Blocks of 100 calls per mode, the modes shuffled per block: shadow on at the rate shown (default budget: 5% of the time), off (rate 0, same runtime and sessions), off again (control: the noise floor). Shadow runs / skipped: samples compared, and samples skipped because the model was busy or the budget spent. Target: ≤ 3% at p50.',
  '',
  '| engine | rate | idle between calls | calls per mode | shadow runs / skipped | p50 off (ms) | p50 on (ms) | p50 cost | p50 control | p99 off (ms) | p99 on (ms) | p99 cost | p99 control |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows,
  '<!-- bench:shadow:end -->',
].join('\n');
await writeBenchmarkSection('shadow', section);
process.stdout.write(`${section}\n`);
process.exit(0);
