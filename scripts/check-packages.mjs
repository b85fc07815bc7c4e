#!/usr/bin/env node
// Checks the published packages the way the ecosystem does, on the tarballs themselves: publint
// (package.json, exports and files; warnings are errors) and @arethetypeswrong/cli (types resolve
// under node16 and bundler; ESM only, so the CommonJS and node10 resolutions are out of scope),
// and that each package declares exactly the packages its built code imports (no missing
// dependency that only the workspace's hoisting hid, no unused one installed for nothing).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packPackages, root } from './pack.mjs';

const bin = (name) => join(root, 'node_modules', '.bin', name);

/** The packages a tarball's JavaScript imports, against what its package.json declares. */
function checkDependencies(tarball) {
  const dir = mkdtempSync(join(tmpdir(), 'edgefleet-deps-'));
  try {
    spawnSync('tar', ['-xzf', tarball, '-C', dir], { stdio: 'inherit' });
    const pkg = JSON.parse(readFileSync(join(dir, 'package', 'package.json'), 'utf8'));
    const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
    const imported = new Set();
    const files = readdirSync(join(dir, 'package'), { recursive: true }).map(String);
    for (const file of files.filter((f) => /^(dist|bin)\/.*\.(m?js|d\.ts)$/.test(f))) {
      const code = readFileSync(join(dir, 'package', file), 'utf8');
      for (const match of code.matchAll(
        /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm,
      )) {
        const specifier = match[1] ?? match[2] ?? match[3];
        if (!specifier || specifier.startsWith('.') || specifier.startsWith('node:') || builtinModules.includes(specifier)) continue;
        imported.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]);
      }
    }
    // A package may name itself (self-reference through its own exports, or in a doc comment's example).
    imported.delete(pkg.name);
    const missing = [...imported].filter((name) => !declared.has(name));
    const unused = [...declared].filter((name) => !imported.has(name));
    return { ok: missing.length === 0 && unused.length === 0, missing, unused };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const packs = join(tmpdir(), `edgefleet-packs-${process.pid}`);
let failed = 0;
for (const tarball of packPackages(packs)) {
  const deps = checkDependencies(tarball);
  if (!deps.ok) failed += 1;
  console.log(`${deps.ok ? 'ok  ' : 'FAIL'} dependencies ${tarball.split('/').pop()}`);
  if (!deps.ok)
    console.log(
      `  imported but not declared: ${deps.missing.join(', ') || '-'}; declared but not imported: ${deps.unused.join(', ') || '-'}`,
    );
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
