/**
 * An evaluation outlives the server that started it: a server stopped mid-job puts the job back in
 * the queue, and the next server on the same database (a restart, or another replica) runs it to
 * the end, from the dataset in the shared artifact store.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { expect, it } from 'vitest';
import { createTestPostgresDatabase, dropTestPostgresDatabase, startTestServer, type TestServer, uploadForm } from '../testing.ts';
import { HEARTBEAT_STALE_MS } from './runner.ts';

const ADMIN = 'evaluation-runner-admin-token-0123456789';

it('puts an evaluation cut short by a shutdown back in the queue, and the next server finishes it', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-evaluation-'));
  const databaseUrl =
    process.env.EDGEFLEET_TEST_SERVER_DATABASE === 'postgres' ? await createTestPostgresDatabase('evaluation') : undefined;
  const config = { dataDir, adminToken: ADMIN, ...(databaseUrl ? { databaseUrl } : {}) };
  let server: TestServer | undefined = await startTestServer(config);
  const auth = { authorization: `Bearer ${ADMIN}` };
  try {
    const registered = await server.app.inject({
      method: 'POST',
      url: '/v1/models/mlp/versions',
      headers: auth,
      payload: uploadForm('1.0.0', mlpModel(7).bytes),
    });
    expect(registered.statusCode, registered.body).toBe(201);
    const values = seededValues(4 * 20_000, 5, 2);
    const lines = ['a,b,c,d,label'];
    for (let i = 0; i < 20_000; i++) lines.push(`${values.subarray(i * 4, i * 4 + 4).join(',')},${i % 3}`);
    const form = new FormData();
    form.append('task', JSON.stringify({ kind: 'classification' }));
    form.append('dataset', new Blob([`${lines.join('\n')}\n`]), 'big.csv');
    const started = await server.app.inject({
      method: 'POST',
      url: '/v1/models/mlp/versions/1.0.0/evaluations',
      headers: auth,
      payload: form,
    });
    expect(started.statusCode, started.body).toBe(202);
    const id = started.json().id as string;
    const read = async (s: TestServer) => (await s.app.inject({ method: 'GET', url: `/v1/evaluations/${id}`, headers: auth })).json();
    // Under way (its progress is the witness), then the server stops.
    for (let e = await read(server); e.progress.samples === 0 || e.status !== 'running'; e = await read(server)) {
      expect(e.status).not.toBe('succeeded'); // 20,000 samples: not over before it was seen running
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await server.close();
    server = undefined;

    server = await startTestServer(config);
    const resumed = server;
    let done = await read(resumed);
    // Well before a silent runner's job would be taken over (HEARTBEAT_STALE_MS): it was handed back, not abandoned.
    const deadline = Date.now() + HEARTBEAT_STALE_MS / 2;
    while (done.status !== 'succeeded' && done.status !== 'failed') {
      if (Date.now() > deadline) throw new Error(`evaluation ${id} still ${done.status}: the stopped server did not hand it back`);
      await new Promise((resolve) => setTimeout(resolve, 25));
      done = await read(resumed);
    }
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.metrics.samples).toBe(20_000);
    expect(done.progress).toEqual({ samples: 20_000, total: 20_000, fraction: 1 });
  } finally {
    await server?.close();
    if (databaseUrl) await dropTestPostgresDatabase(databaseUrl);
  }
}, 120_000);
