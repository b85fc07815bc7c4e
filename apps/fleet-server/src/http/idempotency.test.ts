/**
 * Idempotency-Key on creating POSTs (issue 14): a retry gets the first answer and creates nothing
 * more; the same key with another request is refused; refusals are not remembered; what is kept
 * holds no secret in clear.
 */
import { mlpModel } from '@edgefleet/test-utils';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../store/db.ts';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const post = (url: string, payload: unknown, key?: string, headers: Record<string, string> = server.auth) =>
  server.app.inject({
    method: 'POST',
    url,
    headers: { ...headers, ...(key ? { 'idempotency-key': key } : {}), 'content-type': 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });
const deviceCount = async () =>
  (await server.app.inject({ method: 'GET', url: '/v1/devices?limit=1000', headers: server.auth })).json().devices.length as number;

describe('Idempotency-Key', () => {
  it('answers a retried creation with the first answer, and creates one device', async () => {
    const before = await deviceCount();
    const first = await post('/v1/devices', { tags: ['a=1', 'b=2'] }, 'key-device-1');
    expect(first.statusCode).toBe(201);
    // The same request, its JSON written another way (key order, spacing): the same request.
    const again = await post('/v1/devices', '{ "tags" : ["a=1","b=2"] }', 'key-device-1');
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    expect(again.headers.location).toBe(first.headers.location);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(await deviceCount()).toBe(before + 1);
  });

  it('refuses the same key with another body or path (422), and accepts a new key', async () => {
    await post('/v1/devices', { tags: ['x'] }, 'key-reused');
    const other = await post('/v1/devices', { tags: ['y'] }, 'key-reused');
    expect(other.json()).toMatchObject({ status: 422, code: 'EF_IDEMPOTENCY_KEY_REUSED' });
    const elsewhere = await post('/v1/enrollment-tokens', { tags: ['x'] }, 'key-reused');
    expect(elsewhere.json()).toMatchObject({ status: 422, code: 'EF_IDEMPOTENCY_KEY_REUSED' });
    expect((await post('/v1/devices', { tags: ['y'] }, 'key-fresh')).statusCode).toBe(201);
  });

  it('does not remember a refusal: the corrected retry with the same key runs', async () => {
    expect((await post('/v1/devices', { id: 'bad/id' }, 'key-after-refusal')).statusCode).toBe(400);
    const fixed = await post('/v1/devices', { id: 'good-id-1' }, 'key-after-refusal');
    expect(fixed.statusCode).toBe(201);
    expect((await post('/v1/devices', { id: 'good-id-1' }, 'key-after-refusal')).json().secret).toBe(fixed.json().secret);
  });

  it('keeps keys per token: another token with the same key creates its own', async () => {
    const other = (await post('/v1/admin-tokens', { name: 'second', scope: 'admin' })).json().token as string;
    const mine = await post('/v1/devices', {}, 'key-per-token');
    const theirs = await post('/v1/devices', {}, 'key-per-token', { authorization: `Bearer ${other}` });
    expect(theirs.statusCode).toBe(201);
    expect(theirs.json().id).not.toBe(mine.json().id);
  });

  it('lets a device retry its enrollment with the same key: one device, its first credential', async () => {
    const token = (await post('/v1/enrollment-tokens', { uses: 10, tags: ['enroll-retry'] })).json().token as string;
    const first = await post('/v1/enroll', { token }, 'enroll-key-1', {});
    expect(first.statusCode).toBe(201);
    const again = await post('/v1/enroll', { token }, 'enroll-key-1', {});
    expect(again.json()).toEqual(first.json());
    expect(again.headers['idempotent-replayed']).toBe('true');
    const listed = (await server.app.inject({ method: 'GET', url: '/v1/devices?tag=enroll-retry', headers: server.auth })).json().devices;
    expect(listed).toHaveLength(1);
    // The same key with another enrollment token is another caller's: a new device.
    const other = (await post('/v1/enrollment-tokens', { uses: 1, tags: ['enroll-retry'] })).json().token as string;
    const theirs = await post('/v1/enroll', { token: other }, 'enroll-key-1', {});
    expect(theirs.statusCode).toBe(201);
    expect(theirs.json().id).not.toBe(first.json().id);
  });

  it('refuses a malformed key before doing anything', async () => {
    const before = await deviceCount();
    const bad = await post('/v1/devices', {}, 'x'.repeat(256));
    expect(bad.json()).toMatchObject({ status: 400, code: 'EF_SCHEMA_INVALID' });
    expect(await deviceCount()).toBe(before);
  });

  it('stores the answer encrypted: the database does not hold a device secret in clear', async () => {
    const created = (await post('/v1/devices', { id: 'secret-holder' }, 'key-secret')).json();
    // Read as an attacker with the database would: its own connection (SQLite file or PostgreSQL).
    const database = await openDatabase({ dataDir: server.config.dataDir, databaseUrl: server.config.databaseUrl });
    try {
      const { rows } = await sql<Record<string, unknown>>`select * from idempotency_keys`.execute(database.db);
      expect(rows.length).toBeGreaterThan(0);
      const dump = JSON.stringify(rows);
      expect(dump).not.toContain(created.secret);
      expect(dump).not.toContain('key-secret');
    } finally {
      await database.close();
    }
  });

  it('replays a model upload whatever the order of its parts, and refuses the key for other bytes', async () => {
    const model = mlpModel(3).bytes;
    const first = await server.app.inject({
      method: 'POST',
      url: '/v1/models/idem/versions',
      headers: { ...server.auth, 'idempotency-key': 'upload-1' },
      payload: uploadForm('1.0.0', model, { metadata: { team: 'vision' } }),
    });
    expect(first.statusCode).toBe(201);
    // The retry puts the file first and the fields after it, with another boundary.
    const reordered = new FormData();
    reordered.append('model', new Blob([model.slice()]), 'model.onnx');
    reordered.append('metadata', JSON.stringify({ team: 'vision' }));
    reordered.append('version', '1.0.0');
    const retry = await server.app.inject({
      method: 'POST',
      url: '/v1/models/idem/versions',
      headers: { ...server.auth, 'idempotency-key': 'upload-1' },
      payload: reordered,
    });
    expect(retry.statusCode).toBe(201);
    expect(retry.json().sha256).toBe(first.json().sha256);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    const other = await server.app.inject({
      method: 'POST',
      url: '/v1/models/idem/versions',
      headers: { ...server.auth, 'idempotency-key': 'upload-1' },
      payload: uploadForm('1.0.0', mlpModel(4).bytes, { metadata: { team: 'vision' } }),
    });
    expect(other.json()).toMatchObject({ status: 422, code: 'EF_IDEMPOTENCY_KEY_REUSED' });
    const versions = (await server.app.inject({ method: 'GET', url: '/v1/models/idem/versions', headers: server.auth })).json();
    expect(versions.versions).toHaveLength(1);
  });

  it('registers one version when two uploads with the same key race', async () => {
    const model = mlpModel(5).bytes;
    const send = () =>
      server.app.inject({
        method: 'POST',
        url: '/v1/models/race/versions',
        headers: { ...server.auth, 'idempotency-key': 'upload-race' },
        payload: uploadForm('1.0.0', model),
      });
    const answers = await Promise.all([send(), send()]);
    const statuses = answers.map((a) => a.statusCode).sort();
    // One ran; the other either waited its turn (409, retry later) or got the first answer.
    expect([statuses, answers.map((a) => a.json().code ?? null)]).toSatisfy(
      ([codes, errors]: [number[], (string | null)[]]) =>
        (codes[0] === 201 && codes[1] === 201) || (codes[0] === 201 && codes[1] === 409 && errors.includes('EF_IDEMPOTENCY_KEY_IN_FLIGHT')),
    );
    const versions = (await server.app.inject({ method: 'GET', url: '/v1/models/race/versions', headers: server.auth })).json();
    expect(versions.versions).toHaveLength(1);
  });
});
