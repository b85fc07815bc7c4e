/**
 * kill -9 of the server in the middle of an upload: after a restart there is no partial version,
 * no temp file, and no artifact without its row.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readModel, SILERO_VAD_V5_PATH } from '@edgefleet/test-utils';
import { describe, expect, it } from 'vitest';
import { startTestServer } from '../testing.ts';

const RESTART_TOKEN = 'restart-token-0123456789abcdefghijklmn';
const main = fileURLToPath(new URL('../cli/main.ts', import.meta.url));
const root = fileURLToPath(new URL('../../../../', import.meta.url));

async function startChild(dataDir: string): Promise<{ child: ChildProcess; url: string; token: string }> {
  const child = spawn(process.execPath, ['--conditions=@edgefleet/source', '--import', 'tsx', main], {
    cwd: root,
    env: { ...process.env, EDGEFLEET_DATA_DIR: dataDir, EDGEFLEET_PORT: '0', EDGEFLEET_MQTT_PORT: '0', EDGEFLEET_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${output}`)), 30_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const url = /admin API\s+(http:\/\/\S+)/.exec(output)?.[1];
      const tokenFile = /the first admin token is in (\S+)/.exec(output)?.[1];
      if (url && tokenFile) {
        clearTimeout(timer);
        void readFile(tokenFile, 'utf8').then((token) => resolve({ child, url, token: token.trim() }), reject);
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${output}`)));
  });
}

describe('kill -9 during an upload', () => {
  it('leaves no partial version, no temp file and no orphaned artifact after a restart', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-upload-crash-'));
    const { child, url, token } = await startChild(dataDir);
    const model = readModel(SILERO_VAD_V5_PATH);
    const boundary = 'edgefleet-crash-boundary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="model"; filename="model.onnx"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const upload = request(`${url}/v1/models/crashy/versions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
    });
    upload.on('error', () => undefined);
    upload.write(head);
    upload.write(model.subarray(0, 1_000_000)); // half the model, then silence
    const tmp = join(dataDir, 'artifacts', 'tmp');
    for (let i = 0; i < 100 && (await readdir(tmp)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await readdir(tmp)).length).toBe(1); // the upload is streaming into a temp file
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    upload.destroy();

    // A crash after the bytes were stored but before the row: an artifact nobody refers to.
    await writeFile(join(dataDir, 'artifacts', 'f'.repeat(64)), 'orphan');

    // The folder backend's own crash safety (the database one stores in one transaction).
    const restarted = await startTestServer({ dataDir, adminToken: RESTART_TOKEN, artifacts: 'folder' });
    try {
      const auth = { authorization: `Bearer ${RESTART_TOKEN}` };
      expect((await restarted.app.inject({ method: 'GET', url: '/v1/models/crashy/versions', headers: auth })).statusCode).toBe(404);
      expect(await readdir(tmp)).toEqual([]);
      expect((await readdir(join(dataDir, 'artifacts'))).filter((f) => f !== 'tmp')).toEqual([]);
    } finally {
      await restarted.close();
    }
  }, 60_000);
});
