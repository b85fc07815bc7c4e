/**
 * The server's log as an operator reads it: one JSON line per request (pino's shape), the EF_ code
 * on every 4xx/5xx line, health checks at debug, no query strings.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleetServer, type FleetServer } from '../server.ts';

const TOKEN = 'request-log-admin-token-0123456789abcdef';
const lines: Record<string, unknown>[] = [];
let server: FleetServer;

beforeAll(async () => {
  server = await createFleetServer({
    env: {},
    config: { dataDir: await mkdtemp(join(tmpdir(), 'ef-request-log-')), port: 0, mqttPort: 0, adminToken: TOKEN },
    logger: { level: 'info', stream: { write: (line) => lines.push(JSON.parse(line)) } },
  });
});
afterAll(async () => {
  await server?.close();
});

const requestLines = () => lines.filter((line) => line.msg === 'request' || line.msg === 'request failed');

describe('the request log', () => {
  it('writes one info line per request, with the EF_ code of a 4xx, and health checks only at debug', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await server.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await server.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    expect((await server.app.inject({ method: 'GET', url: '/v1/models', headers: auth })).statusCode).toBe(200);
    expect((await server.app.inject({ method: 'GET', url: '/v1/models?token=secret-in-query' })).statusCode).toBe(401);
    expect((await server.app.inject({ method: 'GET', url: '/v1/models/nope', headers: auth })).statusCode).toBe(404);
    expect(
      (
        await server.app.inject({
          method: 'POST',
          url: '/v1/enrollment-tokens',
          headers: { ...auth, 'content-type': 'application/json' },
          payload: '{',
        })
      ).statusCode,
    ).toBe(400);
    const logged = requestLines();
    // The two probes left no line at info; the four other requests one each.
    expect(logged.map((line) => [line.method, line.path, line.status, line.code])).toEqual([
      ['GET', '/v1/models', 200, undefined],
      ['GET', '/v1/models', 401, 'EF_UNAUTHORIZED'],
      ['GET', '/v1/models/nope', 404, 'EF_NOT_FOUND'],
      ['POST', '/v1/enrollment-tokens', 400, 'EF_JSON_INVALID'],
    ]);
    for (const line of logged) {
      expect(line).toMatchObject({ level: 30, reqId: expect.any(String), ms: expect.any(Number) });
      expect(line).not.toHaveProperty('err');
    }
    expect(JSON.stringify(lines)).not.toContain('secret-in-query');
    expect(lines.filter((line) => line.msg === 'incoming request' || line.msg === 'request completed')).toEqual([]);
  });

  it('logs the probes at debug when asked', async () => {
    const debugLines: Record<string, unknown>[] = [];
    const verbose = await createFleetServer({
      env: {},
      config: { dataDir: await mkdtemp(join(tmpdir(), 'ef-request-log-debug-')), port: 0, mqttPort: 0, adminToken: TOKEN },
      logger: { level: 'debug', stream: { write: (line) => debugLines.push(JSON.parse(line)) } },
    });
    try {
      await verbose.app.inject({ method: 'GET', url: '/healthz' });
      expect(debugLines.filter((line) => line.msg === 'request')).toEqual([
        expect.objectContaining({ level: 20, method: 'GET', path: '/healthz', status: 200 }),
      ]);
    } finally {
      await verbose.close();
    }
  });
});
