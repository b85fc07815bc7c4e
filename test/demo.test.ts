/** The README's first command (`pnpm demo`) runs from a checkout and tells the story it promises. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('pnpm demo', () => {
  it('issues, verifies and acceptance-tests a real model, and refuses every attack with its code', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: root, timeout: 60_000 });
    expect(stdout).toContain('✓ downloaded 279 bytes, sha256 matches');
    expect(stdout).toMatch(/✓ acceptance test on WASM: max \|error\|/);
    for (const code of [
      'EF_SIGNATURE_INVALID',
      'EF_SIGNATURE_UNKNOWN_KEY',
      'EF_DESIRED_STATE_WRONG_DEVICE',
      'EF_DESIRED_STATE_REPLAYED',
      'EF_DOCUMENT_EXPIRED',
      'EF_MODEL_VERSION_ROLLBACK',
    ]) {
      expect(stdout).toContain(`refused with ${code}`);
    }
    expect(stdout).toContain('✓ key set v2 accepted');
  });
});
