/**
 * The systemd units in deploy/ as systemd itself reads them: `systemd-analyze verify` (no unknown
 * key, no bad value, the command exists and is executable) and `systemd-analyze security --offline`
 * (how exposed the service is: 0 is a locked-down unit, 10 an unprotected one). ExecStart points
 * at /usr/local/bin, where `npm install -g` puts the bins; here it is pointed at this checkout's
 * bins, the files the packages ship.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const UNITS = [
  { unit: 'edgefleet-server.service', bin: 'edgefleet-server', path: 'apps/fleet-server/bin/edgefleet-server.mjs' },
  { unit: 'edgefleet-agent.service', bin: 'edgefleet-agent', path: 'apps/device-agent/bin/edgefleet-agent.mjs' },
];
/** The most exposure a unit may have (systemd calls up to 2.9 "OK"). */
const MAX_EXPOSURE = 2;

describe.each(UNITS)('deploy/systemd/$unit', ({ unit, bin, path }) => {
  it('passes systemd-analyze verify without a warning, and is locked down', async () => {
    const text = await readFile(join(root, 'deploy', 'systemd', unit), 'utf8');
    expect(text).toMatch(new RegExp(`^ExecStart=/usr/local/bin/${bin}\\b`, 'm'));
    for (const option of [
      'StateDirectory=',
      'ProtectSystem=strict',
      'NoNewPrivileges=yes',
      'ProtectHome=yes',
      'CapabilityBoundingSet=\n',
    ]) {
      expect(text).toContain(option);
    }
    expect(text).toMatch(/^(DynamicUser=yes|User=edgefleet)$/m);
    // No secret on the command line, where ps shows it.
    expect(text.match(/^ExecStart=.*$/m)?.[0]).not.toMatch(/token|secret|password/i);
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-units-'));
    const file = join(dir, unit);
    await writeFile(file, text.replace(`/usr/local/bin/${bin}`, join(root, path)));
    const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
    const security = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', file], { encoding: 'utf8' });
    const exposure = Number(security.stdout.match(/Overall exposure level for .*: ([\d.]+)/)?.[1]);
    expect(exposure).toBeLessThanOrEqual(MAX_EXPOSURE);
  });
});

describe('systemd-analyze verify', () => {
  it('fails on a unit with a misspelt option (the check has teeth)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-units-'));
    const file = join(dir, 'broken.service');
    await writeFile(file, `[Service]\nExecStart=${process.execPath}\nProtectSystm=strict\n`);
    const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(verify.stderr).toContain("Unknown key 'ProtectSystm'");
  });
});
