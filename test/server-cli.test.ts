/**
 * `edgefleet-server` as an operator starts it: the first admin token lands in a 0600 file in the
 * data folder and is never written to stdout or stderr, where log shippers collect it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const main = fileURLToPath(new URL('../apps/fleet-server/src/cli/main.ts', import.meta.url));
const TOKEN = 'cli-cwd-admin-token-0123456789abcdefghij';

/** A child's stdout and stderr together, and a wait for a text in them (rejected if it exits first). */
function collect(child: ChildProcess) {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return {
    output: () => output,
    until: (text: string) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          if (!output.includes(text)) return;
          child.stdout?.off('data', check);
          child.stderr?.off('data', check);
          resolve(output);
        };
        child.stdout?.on('data', check);
        child.stderr?.on('data', check);
        child.once('exit', (code) => reject(new Error(`exited with ${code}: ${output}`)));
        check();
      }),
  };
}

describe('edgefleet-server', () => {
  it('writes the first admin token to a 0600 file and prints where it is, never the token', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ef-cli-'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      EDGEFLEET_DATA_DIR: dataDir,
      EDGEFLEET_PORT: '0',
      EDGEFLEET_MQTT_PORT: '0',
      EDGEFLEET_LOG_LEVEL: 'debug',
    };
    delete env.EDGEFLEET_ADMIN_TOKEN;
    const child = spawn(process.execPath, ['--conditions=@edgefleet/source', '--import', 'tsx', main], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const read = collect(child);
    let output = '';
    try {
      output = await read.until('Bearer $(cat');
      const file = join(dataDir, 'admin-token');
      expect(output).toContain(`the first admin token is in ${file}`);
      const token = (await readFile(file, 'utf8')).trim();
      expect(token).toMatch(/^efa_\w+_[\w-]{43}$/);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(read.output()).not.toContain(token);
      expect(read.output()).not.toMatch(/efa_\w+_[\w-]{20}/);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    expect(read.output()).not.toMatch(/efa_\w+_[\w-]{20}/);
  });

  it('started with `pnpm --filter @edgefleet/fleet-server start`, keeps its data where the command was typed, not in the package', async () => {
    const where = await mkdtemp(join(tmpdir(), 'ef-cli-cwd-'));
    const env: NodeJS.ProcessEnv = { ...process.env, EDGEFLEET_PORT: '0', EDGEFLEET_MQTT_PORT: '0', EDGEFLEET_ADMIN_TOKEN: TOKEN };
    delete env.EDGEFLEET_DATA_DIR;
    delete env.INIT_CWD;
    // Its own process group: pnpm runs the server as a child of its own.
    const child = spawn('pnpm', ['--dir', root, '--filter', '@edgefleet/fleet-server', 'start'], {
      cwd: where,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const read = collect(child);
    let output = '';
    try {
      output = await read.until('data folder');
      expect(output).toContain(`data folder    ${join(where, '.edgefleet', 'server')}`);
      expect((await stat(join(where, '.edgefleet', 'server', 'edgefleet.db'))).isFile()).toBe(true);
    } finally {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
});
