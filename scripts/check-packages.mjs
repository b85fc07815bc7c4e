#!/usr/bin/env node
// Checks the published packages the way the ecosystem does, on the tarballs themselves: publint
// (package.json, exports and files; warnings are errors) and @arethetypeswrong/cli (types resolve
// under node16 and bundler; ESM only, so the CommonJS and node10 resolutions are out of scope).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packPackages, root } from './pack.mjs';

const bin = (name) => join(root, 'node_modules', '.bin', name);

const packs = join(tmpdir(), `edgefleet-packs-${process.pid}`);
let failed = 0;
for (const tarball of packPackages(packs)) {
  for (const [tool, args] of [
    ['publint', ['run', tarball, '--strict']],
    ['attw', [tarball, '--profile', 'esm-only', '--format', 'table-flipped']],
  ]) {
    const run = spawnSync(bin(tool), args, { encoding: 'utf8' });
    const ok = run.status === 0;
    if (!ok) failed += 1;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${tool} ${tarball.split('/').pop()}`);
    if (!ok) console.log(run.stdout, run.stderr);
  }
}
rmSync(packs, { recursive: true, force: true });
if (failed > 0) {
  console.error(`${failed} package check(s) failed`);
  process.exit(1);
}
