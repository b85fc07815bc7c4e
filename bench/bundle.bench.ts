/**
 * What runtime + agent add to a web app: the browser entries bundled from the built packages (the
 * dist/ that is published, not the sources), minified, gzipped, against onnxruntime-web alone in
 * the same run, with a budget; and the first load of the fleet server's dashboard (its own budget,
 * 200 KB of JavaScript gzipped). Fails (exit 1) when a budget is exceeded.
 *
 *   pnpm bench:bundle
 */
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { writeBenchmarkSection } from './benchmarks-doc.ts';
import { DASHBOARD_BUDGET, dashboardFirstLoad } from './dashboard-size.ts';

/** Budgets, gzipped bytes. */
const BUDGET = {
  /** edgefleet's own code (runtime, agent, protocol, drift) without its third-party dependencies: 33.8 KB when set. */
  own: 40 * 1024,
  /** runtime + agent with their dependencies, onnxruntime-web aside: 193.6 KB when set (mqtt.js and typebox are most of it). */
  withDependencies: 210 * 1024,
};

const root = fileURLToPath(new URL('..', import.meta.url));
const started = Date.now();
const dir = await mkdtemp(join(tmpdir(), 'edgefleet-bundle-'));
// An app that uses what a fleet member needs (kept alive through `window`, so nothing is shaken off).
const app = join(dir, 'app.js');
await writeFile(
  app,
  `import { createAgent, createIndexedDbAgentState, createIndexedDbTelemetryQueue } from '@edgefleet/agent';
import { createTrust } from '@edgefleet/protocol';
import { createRuntime } from '@edgefleet/runtime';
window.edgefleet = { createAgent, createIndexedDbAgentState, createIndexedDbTelemetryQueue, createTrust, createRuntime };
`,
);
const ortOnly = join(dir, 'ort.js');
await writeFile(ortOnly, `import * as ort from 'onnxruntime-web/webgpu';\nwindow.ort = ort;\n`);

async function measure(entry: string, external: string[]): Promise<{ min: number; gzip: number; parts: Record<string, number> }> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    external,
    // Resolve the packages as an app does: from package.json "exports" to dist/ (no source condition).
    nodePaths: [join(root, 'test', 'node_modules')],
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'error',
    metafile: true,
  });
  const code = result.outputFiles.map((f) => f.contents).reduce((a, b) => Buffer.concat([a, b]), Buffer.alloc(0));
  // Minified bytes per package, from esbuild's metafile.
  const parts: Record<string, number> = {};
  for (const output of Object.values(result.metafile.outputs)) {
    for (const [path, input] of Object.entries(output.inputs)) {
      const name =
        path.match(/node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/)?.[1] ??
        path.match(/(?:packages|apps)\/([^/]+)\/dist/)?.[1]?.replace(/^/, '@edgefleet/') ??
        'the app';
      parts[name] = (parts[name] ?? 0) + input.bytesInOutput;
    }
  }
  return { min: code.length, gzip: gzipSync(code, { level: 9 }).length, parts };
}

const thirdParty = ['onnxruntime-web', 'onnxruntime-web/*', 'mqtt', 'idb-keyval', '@noble/*', 'typebox', 'typebox/*'];
const all = await measure(app, []);
const withDependencies = await measure(app, ['onnxruntime-web', 'onnxruntime-web/*']);
const own = await measure(app, thirdParty);
const ort = await measure(ortOnly, []);
const wasmPath = join(root, 'test', 'node_modules', 'onnxruntime-web', 'dist', 'ort-wasm-simd-threaded.asyncify.wasm');
const wasm = { min: (await stat(wasmPath)).size, gzip: gzipSync(await readFile(wasmPath), { level: 6 }).length };

const dashboard = await dashboardFirstLoad();

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const over = [
  ...(dashboard.jsGzip > DASHBOARD_BUDGET
    ? [`the dashboard's first load is ${kb(dashboard.jsGzip)} of JavaScript gzipped, over its budget of ${kb(DASHBOARD_BUDGET)}`]
    : []),
  ...(own.gzip > BUDGET.own ? [`edgefleet's own code is ${kb(own.gzip)} gzipped, over its budget of ${kb(BUDGET.own)}`] : []),
  ...(withDependencies.gzip > BUDGET.withDependencies
    ? [`runtime + agent with dependencies is ${kb(withDependencies.gzip)} gzipped, over its budget of ${kb(BUDGET.withDependencies)}`]
    : []),
];
const rows = [
  `| edgefleet's own code (runtime, agent, protocol, drift) | ${kb(own.min)} | ${kb(own.gzip)} | ${(own.gzip / ort.gzip).toFixed(2)}x | ${kb(BUDGET.own)} |`,
  `| runtime + agent with their dependencies (mqtt.js, typebox, idb-keyval, noble), onnxruntime-web aside | ${kb(withDependencies.min)} | ${kb(withDependencies.gzip)} | ${(withDependencies.gzip / ort.gzip).toFixed(2)}x | ${kb(BUDGET.withDependencies)} |`,
  `| onnxruntime-web alone (\`onnxruntime-web/webgpu\`, the baseline) | ${kb(ort.min)} | ${kb(ort.gzip)} | 1.00x | |`,
  `| everything the app bundles | ${kb(all.min)} | ${kb(all.gzip)} | ${(all.gzip / ort.gzip).toFixed(2)}x | |`,
  `| \`ort-wasm-simd-threaded.asyncify.wasm\`, loaded at run time (not bundled) | ${kb(wasm.min)} | ${kb(wasm.gzip)} | | |`,
  `| the fleet server's dashboard, first load: its JavaScript (Preact, signals, uPlot, the typed client; Vite build) | ${kb(dashboard.jsMin)} | ${kb(dashboard.jsGzip)} | ${(dashboard.jsGzip / ort.gzip).toFixed(2)}x | ${kb(DASHBOARD_BUDGET)} |`,
];
for (const row of rows) process.stderr.write(`${row}\n`);
const parts = Object.entries(withDependencies.parts)
  .sort((a, b) => b[1] - a[1])
  .filter(([, bytes]) => bytes >= 1024)
  .map(([name, bytes]) => `${name} ${kb(bytes)}`)
  .join(', ');
await writeBenchmarkSection(
  'bundle',
  [
    '<!-- bench:bundle:start -->',
    '## Bundle size in a web app',
    '',
    `Command: \`pnpm build && pnpm bench:bundle\` (bench/bundle.bench.ts). Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; took ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    "An app importing the browser entries of `@edgefleet/runtime` and `@edgefleet/agent` (createRuntime, createAgent, the IndexedDB stores, createTrust), bundled from the packages' dist/ with esbuild (minified, ES2022, tree-shaken), gzip level 9; ratios against onnxruntime-web's own bundle measured in the same run. The last row is the dashboard the fleet server serves: the scripts its index.html loads, as built by `pnpm build`. The benchmark fails when a budget is exceeded.",
    '',
    '| what | minified | gzipped | vs onnxruntime-web | budget (gzipped) |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `Minified bytes by package, onnxruntime-web aside: ${parts}.`,
    '<!-- bench:bundle:end -->',
  ].join('\n'),
);
if (over.length > 0) {
  for (const line of over) process.stderr.write(`over budget: ${line}\n`);
  process.exit(1);
}
