#!/usr/bin/env node
// Runs every test of the workspace (vitest) and ends with the plain line `N passed, N failed`.
// A run in which no test executed is a failure: a green run must mean tests ran.
// Extra arguments go to vitest (`pnpm test -- packages/protocol`). First it makes sure the Debian
// packages the tests drive (Chromium...) are installed: scripts/ensure-system-deps.sh, then builds
// the packages (scripts/build.mjs).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

if (process.env.EDGEFLEET_SKIP_SYSTEM_DEPS !== '1') {
  const deps = spawnSync('bash', [join('scripts', 'ensure-system-deps.sh')], { stdio: 'inherit' });
  if (deps.status !== 0) process.exit(deps.status ?? 1);
}

// The CLIs the tests start and the tarballs the consumer test packs run the built dist/ (what is
// published); unit tests resolve sources. The build is incremental: seconds when nothing changed.
const build = spawnSync(process.execPath, [join('scripts', 'build.mjs')], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const results = join('.vitest', 'results.json');
rmSync(results, { force: true });

const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
const run = spawnSync(process.execPath, [vitest, 'run', ...process.argv.slice(2).filter((a) => a !== '--')], { stdio: 'inherit' });

if (!existsSync(results)) {
  console.log('0 passed, 0 failed');
  console.error(`vitest wrote no results (exit ${run.status ?? run.signal}): no test ran`);
  process.exit(1);
}
const report = JSON.parse(readFileSync(results, 'utf8'));
const passed = report.numPassedTests ?? 0;
// A test file that fails to load has no test results of its own: count it as one failure.
const brokenFiles = (report.testResults ?? []).filter(
  (file) => file.status === 'failed' && (file.assertionResults ?? []).length === 0,
).length;
const failed = (report.numFailedTests ?? 0) + brokenFiles;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
if (passed === 0) {
  console.error('no test passed: a run that tests nothing is a failure');
  process.exit(1);
}
process.exit(failed > 0 || run.status !== 0 ? 1 : 0);
