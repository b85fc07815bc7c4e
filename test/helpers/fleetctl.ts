/** fleetctl as npm installs it: the compiled bin run by plain Node in a child process (the test command builds first). */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const FLEETCTL_BIN = fileURLToPath(new URL('../../apps/fleetctl/bin/fleetctl.mjs', import.meta.url));

export interface FleetctlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs fleetctl with only PATH from this process's environment plus `env`, optionally feeding stdin. */
export function fleetctl(
  args: readonly string[],
  options: { readonly env?: Record<string, string>; readonly stdin?: string; readonly cwd?: string } = {},
): Promise<FleetctlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FLEETCTL_BIN, ...args], {
      ...(options.cwd ? { cwd: options.cwd } : {}),
      env: { PATH: process.env.PATH ?? '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}
