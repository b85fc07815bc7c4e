#!/usr/bin/env node
// Builds every public package and app into its dist/: ESM JavaScript, .d.ts and source maps, with
// tsc project references (tsconfig.build.json), in dependency order and incrementally. tsc is the
// type checker the workspace already runs, so what is emitted is exactly what was checked, file for
// file (no bundling: apps that use the packages bundle them, and tree-shake per module). Files tsc
// does not emit (the server's model-check worker, plain JavaScript; the systemd units) are copied.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
const built = spawnSync(process.execPath, [tsc, '-b', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (built.status !== 0) process.exit(built.status ?? 1);

// The systemd units of deploy/ ship in the packages of what they run (npm install -g, then copy
// the unit from the installed package: see deploy/README.md).
const assets = [
  ['apps/fleet-server/src/registry/load-worker.mjs', 'apps/fleet-server/dist/registry/load-worker.mjs'],
  ['apps/fleet-server/src/evaluation/evaluate-worker.mjs', 'apps/fleet-server/dist/evaluation/evaluate-worker.mjs'],
  ['deploy/systemd/edgefleet-server.service', 'apps/fleet-server/systemd/edgefleet-server.service'],
  ['deploy/systemd/edgefleet.sysusers.conf', 'apps/fleet-server/systemd/edgefleet.sysusers.conf'],
  ['deploy/systemd/edgefleet-agent.service', 'apps/device-agent/systemd/edgefleet-agent.service'],
];
for (const [from, to] of assets) {
  mkdirSync(dirname(join(root, to)), { recursive: true });
  copyFileSync(join(root, from), join(root, to));
}

// The dashboard: a Vite production build of apps/dashboard, written into the fleet server's
// package (its `dashboard/` folder), which serves it at / and ships it to npm.
const vite = join(dirname(createRequire(join(root, 'apps/dashboard/package.json')).resolve('vite/package.json')), 'bin', 'vite.js');
const dashboard = spawnSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], {
  cwd: join(root, 'apps/dashboard'),
  stdio: 'inherit',
});
if (dashboard.status !== 0) process.exit(dashboard.status ?? 1);
