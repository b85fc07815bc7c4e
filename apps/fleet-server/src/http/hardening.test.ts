/**
 * The admin API as an attacker and a careless client meet it: credentials checked before anything
 * is parsed, hostile multipart and JSON refused with a code (never a 500), devices that cannot be
 * enumerated or read models they are not assigned, and tidy answers at the edges.
 */
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildOnnxModel, mlpModel } from '@edgefleet/test-utils';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleetServer } from '../server.ts';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });

async function register(name: string, version: string, bytes: Uint8Array) {
  const response = await server.app.inject({
    method: 'POST',
    url: `/v1/models/${name}/versions`,
    headers: server.auth,
    payload: uploadForm(version, bytes),
  });
  expect(response.statusCode, response.body).toBe(201);
  return response.json() as { sha256: string };
}

async function createDevice(id: string): Promise<string> {
  const response = await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id } });
  return response.json().secret;
}

describe('authentication comes first', () => {
  it('answers an anonymous request 401 before reading its body, whatever the body and content type', async () => {
    for (const [type, payload] of [
      ['text/xml', '<model/>'],
      ['multipart/form-data', 'no boundary at all'],
      ['application/json', '{"broken": '],
      ['application/json', JSON.stringify({ blob: 'x'.repeat(2 * 1024 * 1024) })], // above the body limit
    ] as const) {
      const response = await server.app.inject({
        method: 'POST',
        url: '/v1/models/m/versions',
        headers: { 'content-type': type },
        payload,
      });
      expect(response.statusCode, `${type}: ${response.body}`).toBe(401);
      expect(response.json()).toMatchObject({ code: 'EF_UNAUTHORIZED' });
    }
    const devices = await server.app.inject({
      method: 'POST',
      url: '/v1/devices',
      headers: { 'content-type': 'text/plain' },
      payload: 'x',
    });
    expect(devices.json()).toMatchObject({ code: 'EF_UNAUTHORIZED' });
  });
});

describe('hostile bodies', () => {
  it('answers malformed multipart uploads with a coded 400, never a 500, and keeps nothing', async () => {
    const valid = new Response(uploadForm('1.0.0', mlpModel(1).bytes));
    const body = Buffer.from(await valid.arrayBuffer());
    const boundary = /boundary=(.*)$/.exec(valid.headers.get('content-type') ?? '')?.[1] ?? '';
    // Cut anywhere before the close delimiter's last "--" (the CRLF after it is optional, RFC 2046).
    const truncated = fc.nat(body.length - 3);
    const mutation = fc.oneof(
      fc.record({ type: fc.constant('multipart/form-data'), cut: fc.nat(body.length) }),
      fc.record({ type: fc.constant(`multipart/form-data; boundary=${boundary}`), cut: truncated }),
      fc.record({ type: fc.constant('multipart/form-data; boundary=wrong'), cut: fc.constant(body.length) }),
      fc.record({ type: fc.constant(`multipart/form-data; boundary=${boundary}`), garbage: fc.uint8Array({ maxLength: 300 }) }),
    );
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const payload = 'garbage' in m ? Buffer.from(m.garbage) : body.subarray(0, m.cut);
        const response = await server.app.inject({
          method: 'POST',
          url: '/v1/models/fuzzed/versions',
          headers: { ...server.auth, 'content-type': m.type },
          payload,
        });
        expect(response.statusCode, response.body).toBeGreaterThanOrEqual(400);
        expect(response.statusCode, response.body).toBeLessThan(500);
        expect(response.json().code).toMatch(/^EF_[A-Z_]+$/);
      }),
      { numRuns: 200 },
    );
    expect((await server.app.inject({ method: 'GET', url: '/v1/models/fuzzed/versions', headers: server.auth })).statusCode).toBe(404);
  });

  it('refuses __proto__ and constructor keys in upload fields; nothing is signed', async () => {
    for (const metadata of ['{"__proto__":{"admin":"yes"}}', '{"constructor":{"prototype":{"x":"1"}}}', '{"ok":"1","__proto__":{}}']) {
      const response = await server.app.inject({
        method: 'POST',
        url: '/v1/models/poisoned/versions',
        headers: server.auth,
        payload: uploadForm('1.0.0', mlpModel(1).bytes, { metadata }),
      });
      expect(response.statusCode, metadata).toBe(400);
      expect(response.json()).toMatchObject({ code: 'EF_SCHEMA_INVALID' });
    }
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it('refuses __proto__ and constructor keys in JSON bodies with a coded 400, creating nothing', async () => {
    for (const payload of ['{"__proto__":{"admin":true},"id":"proto-1"}', '{"id":"proto-2","constructor":{"prototype":{"admin":true}}}']) {
      const response = await server.app.inject({
        method: 'POST',
        url: '/v1/devices',
        headers: { ...server.auth, 'content-type': 'application/json' },
        payload,
      });
      expect(response.statusCode, payload).toBe(400);
      expect(response.json().code).toMatch(/^EF_(JSON|SCHEMA)_INVALID$/);
    }
    for (const id of ['proto-1', 'proto-2']) {
      expect((await server.app.inject({ method: 'GET', url: `/v1/devices/${id}`, headers: server.auth })).statusCode).toBe(404);
    }
  });

  it('refuses a model onnxruntime cannot load, even without sample inputs', async () => {
    const absurd = buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: [1] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [1] }],
      nodes: [
        { op: 'ConstantOfShape', inputs: ['shape'], outputs: ['big'] },
        { op: 'Add', inputs: ['x', 'big'], outputs: ['y'] },
      ],
      initializers: [{ name: 'shape', dtype: 'int64', dims: [1], data: BigInt64Array.from([1n << 40n]) }],
    });
    const unknownOp = buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: [1] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [1] }],
      nodes: [{ op: 'NoSuchOperator', inputs: ['x'], outputs: ['y'] }],
    });
    for (const bytes of [unknownOp, absurd]) {
      const response = await server.app.inject({
        method: 'POST',
        url: '/v1/models/unloadable/versions',
        headers: server.auth,
        payload: uploadForm('1.0.0', bytes),
      });
      expect(response.statusCode, response.body).toBe(422);
      expect(response.json().code).toBe('EF_MODEL_INVALID');
    }
    expect((await server.app.inject({ method: 'GET', url: '/v1/models/unloadable/versions', headers: server.auth })).statusCode).toBe(404);
  });
});

describe('devices on the HTTP API', () => {
  it('answers an unknown device and a wrong secret alike, and rate-limits failed device logins', async () => {
    const secret = await createDevice('probe-1');
    const { sha256 } = await register('probed', '1.0.0', mlpModel(2).bytes);
    const url = `/v1/artifacts/${sha256}`;
    const unknown = await server.app.inject({ method: 'GET', url, headers: basic('no-such-device', secret), remoteAddress: '10.9.0.1' });
    const wrong = await server.app.inject({ method: 'GET', url, headers: basic('probe-1', 'wrong-secret'), remoteAddress: '10.9.0.2' });
    const noColon = await server.app.inject({
      method: 'GET',
      url,
      headers: { authorization: `Basic ${Buffer.from('probe-1').toString('base64')}` },
      remoteAddress: '10.9.0.3',
    });
    for (const response of [unknown, wrong, noColon]) {
      expect(response.statusCode).toBe(401);
      expect({ ...response.json(), instance: undefined }).toEqual({ ...unknown.json(), instance: undefined });
    }
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      statuses.push(
        (await server.app.inject({ method: 'GET', url, headers: basic('probe-1', `guess-${i}`), remoteAddress: '10.9.0.4' })).statusCode,
      );
    }
    expect(statuses).toContain(429);
    expect(statuses.indexOf(429)).toBeGreaterThan(0);
    // Another address is not affected by that one's failures.
    const other = await server.app.inject({ method: 'GET', url, headers: basic('probe-1', 'wrong-again'), remoteAddress: '10.9.0.5' });
    expect(other.statusCode).toBe(401);
  });

  it('lets a device download only the artifacts of models assigned to it', async () => {
    const secret = await createDevice('scoped-1');
    const mine = await register('assigned', '1.0.0', mlpModel(3).bytes);
    const theirs = await register('vendor-secret', '1.0.0', mlpModel(4).bytes);
    await server.app.inject({
      method: 'PUT',
      url: '/v1/devices/scoped-1/desired/assigned',
      headers: server.auth,
      payload: { version: '1.0.0' },
    });
    const get = (sha: string) => server.app.inject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: basic('scoped-1', secret) });
    expect((await get(mine.sha256)).statusCode).toBe(200);
    const refused = await get(theirs.sha256);
    expect(refused.statusCode).toBe(404);
    expect(refused.json().code).toBe('EF_NOT_FOUND');
    // An admin reads every artifact.
    expect((await server.app.inject({ method: 'GET', url: `/v1/artifacts/${theirs.sha256}`, headers: server.auth })).statusCode).toBe(200);
  });
});

describe('edges', () => {
  it('answers an over-long path with problem+json that does not echo it, and sends a Content-Security-Policy', async () => {
    const long = `/v1/models/${'a'.repeat(5000)}/versions`;
    const response = await server.app.inject({ method: 'GET', url: long, headers: server.auth });
    expect(response.statusCode).toBe(414);
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect(response.json()).toMatchObject({ code: 'EF_URL_TOO_LONG', status: 414 });
    expect(response.body).not.toContain('a'.repeat(200));
    const csp = (await server.app.inject({ method: 'GET', url: '/healthz' })).headers['content-security-policy'];
    expect(csp).toContain("default-src 'self'");
    expect((await server.app.inject({ method: 'GET', url: '/docs/' })).statusCode).toBe(200);
  });

  it('refuses an admin token under 32 characters or with little entropy', async () => {
    for (const adminToken of ['a', 'short-token-1234', 'a'.repeat(40), 'abababababababababababababababababab']) {
      await expect(
        createFleetServer({ env: {}, config: { port: 0, mqttPort: 0, adminToken, dataDir: await mkdtemp(join(tmpdir(), 'ef-weak-')) } }),
      ).rejects.toThrow(/EDGEFLEET_ADMIN_TOKEN/);
    }
  });

  it('writes the first admin token to a 0600 file in the data folder instead of showing it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ef-token-'));
    const first = await createFleetServer({ env: {}, config: { port: 0, mqttPort: 0, dataDir } });
    try {
      expect(first.adminTokenFile).toBe(join(dataDir, 'admin-token'));
      const info = await stat(first.adminTokenFile as string);
      expect(info.mode & 0o777).toBe(0o600);
      const token = (await readFile(first.adminTokenFile as string, 'utf8')).trim();
      const response = await first.app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: `Bearer ${token}` } });
      expect(response.statusCode).toBe(200);
    } finally {
      await first.close();
    }
  });
});
