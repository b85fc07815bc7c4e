/** The README's first command (`pnpm demo`) runs from a checkout and tells the story it promises. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('pnpm demo', () => {
  it('delivers a real model to a device, runs it offline after a restart, and refuses every attack with its code', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: root, timeout: 120_000 });
    expect(stdout).toContain('✓ device verified signatures, validity, addressee and sequence: install silero-vad@5.0.0');
    expect(stdout).toMatch(/… 2327524 \/ 2327524 bytes/);
    expect(stdout).toMatch(/✓ acceptance test on (cpu|wasm): max \|error\|/);
    expect(stdout).toMatch(/✓ active: silero-vad@5\.0\.0 on (cpu|wasm)/);
    expect(stdout).toMatch(/✓ restored 5\.0\.0 and got the same outputs/);
    for (const code of [
      'EF_ARTIFACT_HASH_MISMATCH',
      'EF_DOWNLOAD_TOO_LARGE',
      'EF_SIGNATURE_UNKNOWN_KEY',
      'EF_SIGNATURE_INVALID',
      'EF_MODEL_VERSION_ROLLBACK',
      'EF_DESIRED_STATE_REPLAYED',
      'EF_DOCUMENT_EXPIRED',
      'EF_DESIRED_STATE_WRONG_DEVICE',
    ]) {
      expect(stdout).toContain(`refused with ${code}`);
    }
    expect(stdout).toMatch(/✓ still serving 5\.0\.0/);
    expect(stdout).toContain('✓ key set v2 accepted');
  }, 120_000);
});
