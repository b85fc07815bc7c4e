/**
 * Drift profile benchmark (`pnpm bench:drift`): what a profile costs a device per value, and what
 * it costs on the wire, against a baseline in the same run (a loop that only sums the values, the
 * least any per-value work can cost). Results replace the drift section of docs/BENCHMARKS.md.
 */
import { cpus } from 'node:os';
import {
  addValue,
  createHistogram,
  createKll,
  emptyMoments,
  fromWire,
  histogramAdd,
  kllMerge,
  kllUpdate,
  numericProfile,
  observe,
  toWire,
} from '@edgefleet/drift';
import { writeBenchmarkSection } from './benchmarks-doc.ts';

const N = 2_000_000;
const values = new Float64Array(N);
{
  let state = 7;
  for (let i = 0; i < N; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    values[i] = (state / 0x100000000) * 10 - 5;
  }
}
const edges = [-4, -3, -2, -1, 0, 1, 2, 3, 4];

/** Best of 5 runs, in ns per value. */
function nsPerValue(work: () => void): number {
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const started = process.hrtime.bigint();
    work();
    best = Math.min(best, Number(process.hrtime.bigint() - started) / N);
  }
  return best;
}

let sink = 0;
const rows: [string, number][] = [];
rows.push([
  'baseline: sum the values',
  nsPerValue(() => {
    let s = 0;
    for (let i = 0; i < N; i++) s += values[i] as number;
    sink += s;
  }),
]);
rows.push([
  'moments (count, NaN/∞/missing, min, max, mean, M2)',
  nsPerValue(() => {
    const m = emptyMoments();
    for (let i = 0; i < N; i++) addValue(m, values[i] as number);
    sink += m.mean;
  }),
]);
rows.push([
  'KLL sketch update, k = 200',
  nsPerValue(() => {
    const s = createKll(200);
    for (let i = 0; i < N; i++) kllUpdate(s, values[i] as number);
    sink += s.n;
  }),
]);
rows.push([
  'histogram over 9 edges (10 bins)',
  nsPerValue(() => {
    const h = createHistogram(edges);
    for (let i = 0; i < N; i++) histogramAdd(h, values[i] as number);
    sink += h.counts[0] ?? 0;
  }),
]);
rows.push([
  'whole numeric profile (observe: moments + sketch + histogram)',
  nsPerValue(() => {
    const p = numericProfile({ edges });
    for (let i = 0; i < N; i++) observe(p, values[i] as number);
    sink += p.moments.count;
  }),
]);

const sizes: [number, number, number, number][] = [];
for (const n of [10, 100, 1_000, 10_000, 100_000, 1_000_000]) {
  const p = numericProfile({ edges });
  for (let i = 0; i < n; i++) observe(p, values[i] as number);
  const wire = JSON.stringify(toWire(p));
  const started = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) fromWire(JSON.parse(wire));
  const parseUs = Number(process.hrtime.bigint() - started) / 100 / 1000;
  sizes.push([n, wire.length, p.sketch.levels.flat().length, parseUs]);
}

const a = createKll(200);
const b = createKll(200);
for (let i = 0; i < 100_000; i++) kllUpdate(i % 2 ? a : b, values[i] as number);
let started = process.hrtime.bigint();
for (let i = 0; i < 1000; i++) sink += kllMerge(a, b).n;
const mergeUs = Number(process.hrtime.bigint() - started) / 1000 / 1000;
started = process.hrtime.bigint();

const baseline = rows[0]?.[1] ?? 1;
const section = [
  '<!-- bench:drift:start -->',
  '## Drift profiles',
  '',
  `Command: \`pnpm bench:drift\` (bench/drift.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}. ${N.toLocaleString('en-US')} uniform values, best of 5 runs.`,
  '',
  '| per value | ns | vs the baseline |',
  '| --- | --- | --- |',
  ...rows.map(([name, ns]) => `| ${name} | ${ns.toFixed(1)} | ${(ns / baseline).toFixed(1)}x |`),
  '',
  '| values in the window | profile on the wire (JSON, k = 200, 10 bins) | sketch items | parse + validate |',
  '| --- | --- | --- | --- |',
  ...sizes.map(
    ([n, bytes, items, us]) => `| ${n.toLocaleString('en-US')} | ${bytes.toLocaleString('en-US')} bytes | ${items} | ${us.toFixed(0)} µs |`,
  ),
  '',
  `Merging two sketches of 50,000 values each: ${mergeUs.toFixed(0)} µs.`,
  '<!-- bench:drift:end -->',
].join('\n');
await writeBenchmarkSection('drift', section);
process.stdout.write(`${section}\n${sink === 0 ? '' : ''}`);
