#!/usr/bin/env node
// Builds, then packs every public package with `pnpm pack` (which turns `workspace:` and `catalog:`
// versions into real ones), into the folder given (default .packs/). Prints one tarball per line.
// Used by CI's package checks (scripts/check-packages.mjs) and the consumer test (test/consumer).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Every package published to npm, in dependency order. */
export const PUBLIC_PACKAGES = [
  'packages/protocol',
  'packages/drift',
  'packages/runtime',
  'packages/agent',
  'packages/client',
  'apps/fleet-server',
  'apps/device-agent',
  'apps/fleetctl',
];

/** Builds and packs every public package into `destination`; returns the tarballs' paths. */
export function packPackages(destination) {
  const to = resolve(destination);
  const built = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  if (built.status !== 0) throw new Error('the build failed');
  rmSync(to, { recursive: true, force: true });
  mkdirSync(to, { recursive: true });
  for (const dir of PUBLIC_PACKAGES) {
    execFileSync('pnpm', ['pack', '--pack-destination', to], { cwd: join(root, dir), stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return readdirSync(to)
    .filter((name) => name.endsWith('.tgz'))
    .map((name) => join(to, name));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const tarball of packPackages(process.argv[2] ?? join(root, '.packs'))) console.log(tarball);
}
