/** The README's first command (`pnpm demo`) runs from a checkout and tells the story it promises. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('pnpm demo', () => {
  it('starts the fleet server, registers Silero VAD, rolls it out in stages to a real and 9 simulated devices, flags the one zone whose inputs drift with a signed webhook, runs it offline, and refuses every attack', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--conditions=@edgefleet/source', '--import', 'tsx', 'scripts/demo.ts'],
      { cwd: root, timeout: 120_000 },
    );
    expect(stdout).toMatch(/admin API {5}http:\/\/127\.0\.0\.1:\d+ {3}\(OpenAPI: http:\/\/127\.0\.0\.1:\d+\/docs\)/);
    expect(stdout).toMatch(/MQTT {10}mqtt:\/\/127\.0\.0\.1:\d+ {3}ws:\/\/127\.0\.0\.1:\d+\/mqtt/);
    expect(stdout).toMatch(/admin token {3}in \/\S+\/admin-token {3}\(mode 0600; never printed or logged\)/);
    expect(stdout).not.toMatch(/efa_\w+_[\w-]{43}/);
    // The dashboard is served (the demo checks the page loads its script) and linked at each step.
    expect(stdout).toMatch(/dashboard {5}http:\/\/127\.0\.0\.1:\d+\/ {3}\(sign in with the admin token: cat \/\S+\/admin-token\)/);
    expect(stdout).toMatch(/on the dashboard: http:\/\/127\.0\.0\.1:\d+\/rollouts /);
    expect(stdout).toMatch(/on the dashboard: http:\/\/127\.0\.0\.1:\d+\/drift\/silero-vad\/5\.0\.0\?group=zone%3Deast /);
    expect(stdout).not.toContain('⏸'); // no terminal, no pause
    expect(stdout).toContain('silero-vad@5.0.0: 2327524 bytes');
    expect(stdout).toMatch(/inputs input float32\[.*\], state float32\[2,.*,128\], sr int64\[\]/);
    expect(stdout).toContain('10 devices connected over MQTT');
    expect(stdout).toMatch(/demo-cam-001: ✓ acceptance test on (cpu|wasm), max \|error\| .* against the server's golden output/);
    expect(stdout).toMatch(/demo-cam-001: ✓ silero-vad@5\.0\.0 active on (cpu|wasm)/);
    expect(stdout).toContain('$ fleetctl rollouts create silero-vad 5.0.0 --tag site=demo');
    expect(stdout).toMatch(/ro-[0-9a-f]{8} running +stage 1\/3: /);
    expect(stdout).toMatch(/ro-[0-9a-f]{8} completed stage 3\/3: 10\/10 active, 0 failed/);
    expect(stdout).toContain('simulated devices on 5.0.0: 9/9');
    expect(stdout).toContain(
      '✗ a rollout with an empty selector (it would mean the whole fleet): refused with EF_ROLLOUT_SELECTOR_INVALID',
    );
    expect(stdout).toMatch(/✗ a plain rollout of 4\.0\.0 .*: refused with EF_MODEL_DOWNGRADE/);
    expect(stdout).toContain('✗ deleting 5.0.0 while the fleet runs it: refused with EF_MODEL_VERSION_IN_USE');
    // Model quality: a held-out set judges two versions; the worse one's rollout is refused by the policy.
    expect(stdout).toMatch(/\$ fleetctl models evaluate churn@1\.0\.0 .*held-out\.csv --task classification/);
    expect(stdout).toMatch(/accuracy: +0\.9 {2}\[0\.8\d+, 0\.9\d+\] 95%/);
    expect(stdout).toContain('EF_POLICY_FAILED: churn@1.1.0 fails the promotion policy: accuracy');
    // Variants: the server quantized churn@1.0.0 to int8 at registration, and evaluated the build beside it.
    expect(stdout).toMatch(/variant: +int8 int8 .* differs by up to [\d.e-]+ on the golden inputs, quantized here \(1 layers\)/);
    expect(stdout).toMatch(
      /✓ churn@1\.0\.0's int8 variant: \d+ bytes \(\d+% of the model\), accuracy [+-]\d\.\d{4} against it on the same held-out data/,
    );
    expect(stdout).toContain(
      '✗ a rollout of churn@1.1.0 (other weights: far less accurate on the held-out data): refused with EF_POLICY_FAILED',
    );
    expect(stdout).toMatch(/rollout-engine +rollout\.complete/);
    // Drift: the east zone's shifted audio is flagged, it alone among the zones, and the signed webhook fires.
    expect(stdout).toMatch(/reference: \d+ windows, \d+ runs, features input\.mean, input\.std, input\.energy/);
    expect(stdout).toMatch(/s after the shift: zone=east drifting( \([a-zN.,\s]+\))? {3}zone=north (ok|warning)/);
    expect(stdout).toMatch(
      /✓ webhook drift\.firing for zone=east: .*input\.(mean|energy).* drifted for 3 buckets in a row \(signature verified\)/,
    );
    expect(stdout).toContain('zones alerted: zone=east (north and south never drifted');
    // fleetctl: the fleet's status, and the east zone's drift drawn in the terminal.
    expect(stdout).toMatch(/silero-vad +5\.0\.0 +10 +0 +0 +0 +5\.0\.0: 10/);
    expect(stdout).toMatch(/zone=east +drifting +\S+ +[\d.]+ +input\./);
    expect(stdout).toMatch(/input\.mean: ks p-value \(drift below the flat line, [\d.e-]+\), drifted in [1-9]\d*\/\d+ buckets/);
    expect(stdout).toMatch(/┤/);
    expect(stdout).not.toContain('\x1b[');
    expect(stdout).not.toMatch(/zone=(north|south) drifting/);
    expect(stdout).toContain('after revocation: HTTP 403 EF_DEVICE_REVOKED');
    expect(stdout).toMatch(/model\.version\.create +model:silero-vad@5\.0\.0/);
    // The shadow stage: churn@1.1.0 ran beside 1.0.0 on a real device and was stopped there.
    expect(stdout).toContain('demo-edge-001: churn@1.0.0 active (variant int8)');
    expect(stdout).toContain('$ fleetctl rollouts create churn 1.1.0 --device demo-edge-001 --shadow 1 --shadow-rate 1');
    expect(stdout).toMatch(/1 ← +shadow 100% +1 +0 +0 +0 +1 +0/);
    expect(stdout).toMatch(/"gate":"minShadowAgreement","agreement":0\.[0-8]\d*/);
    expect(stdout).toMatch(
      /✗ churn@1\.1\.0 stopped in its shadow stage: it picked the live version's class on \d+% of the \d+ live inputs compared .*answered all \d+ with 1\.0\.0/,
    );
    expect(stdout).toMatch(/✓ restored 5\.0\.0 and got the same outputs/);
    for (const code of [
      'EF_SIGNATURE_UNKNOWN_KEY',
      'EF_SIGNATURE_INVALID',
      'EF_ARTIFACT_HASH_MISMATCH',
      'EF_DOWNLOAD_TOO_LARGE',
      'EF_MODEL_VERSION_ROLLBACK',
    ]) {
      expect(stdout).toContain(`refused with ${code}`);
    }
    expect(stdout).toMatch(/✓ still serving 5\.0\.0/);
  }, 120_000);
});
