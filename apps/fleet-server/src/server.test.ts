/**
 * Admin API hygiene: health, readiness, metrics, OpenAPI, security headers, scopes, rate limits,
 * problem+json everywhere, and hostile bodies generated from the route schemas.
 */
import { invalidFor, validFor } from '@edgefleet/test-utils';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

describe('admin API hygiene', () => {
  it('answers /healthz and /readyz without credentials', async () => {
    expect((await server.app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await server.app.inject({ method: 'GET', url: '/readyz' })).json()).toMatchObject({ status: 'ready' });
  });

  it('exports Prometheus metrics for HTTP, the broker and the registry', async () => {
    await server.app.inject({ method: 'GET', url: '/v1/models', headers: server.auth });
    const response = await server.app.inject({ method: 'GET', url: '/metrics', headers: server.auth });
    expect(response.headers['content-type']).toContain('text/plain');
    expect(response.body).toMatch(/edgefleet_http_requests_total\{method="GET",route="\/v1\/models",status="200"\} \d+/);
    expect(response.body).toContain('edgefleet_mqtt_clients_connected');
    expect(response.body).toMatch(/edgefleet_registry_models \d+/);
    // The process metrics under their standard names, without a doubled prefix.
    expect(response.body).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(response.body).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(response.body).not.toContain('process_process');
  });

  it('publishes an OpenAPI document at /docs', async () => {
    const spec = (await server.app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(spec.openapi).toMatch(/^3\./);
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/v1/models/{name}/versions', '/v1/devices', '/v1/artifacts/{sha256}', '/v1/audit']),
    );
  });

  it('sends security headers', async () => {
    const response = await server.app.inject({ method: 'GET', url: '/healthz' });
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['strict-transport-security']).toBeDefined();
  });

  it('answers unknown routes and bad tokens with problem+json', async () => {
    const missing = await server.app.inject({ method: 'GET', url: '/v1/nope', headers: server.auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.headers['content-type']).toContain('application/problem+json');
    expect(missing.json()).toMatchObject({ code: 'EF_NOT_FOUND', status: 404, type: 'urn:edgefleet:error:EF_NOT_FOUND' });
    const bad = await server.app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer efa_abc_def' } });
    expect(bad.json()).toMatchObject({ code: 'EF_UNAUTHORIZED', status: 401 });
  });

  it('lets a read-only token read but not change anything', async () => {
    const created = await server.app.inject({
      method: 'POST',
      url: '/v1/admin-tokens',
      headers: server.auth,
      payload: { name: 'dashboard', scope: 'read' },
    });
    const read = { authorization: `Bearer ${created.json().token}` };
    expect((await server.app.inject({ method: 'GET', url: '/v1/devices', headers: read })).statusCode).toBe(200);
    const write = await server.app.inject({ method: 'POST', url: '/v1/devices', headers: read, payload: { id: 'x1' } });
    expect(write.json()).toMatchObject({ code: 'EF_FORBIDDEN', status: 403 });
  });

  it('rate-limits with 429 problem+json', async () => {
    const limited = await startTestServer({ rateLimitPerMinute: 3 });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++)
        codes.push((await limited.app.inject({ method: 'GET', url: '/v1/models', headers: limited.auth })).statusCode);
      expect(codes).toEqual([200, 200, 200, 429, 429]);
      const response = await limited.app.inject({ method: 'GET', url: '/v1/models', headers: limited.auth });
      expect(response.json()).toMatchObject({ code: 'EF_RATE_LIMITED', status: 429 });
      expect(response.headers['retry-after']).toBeDefined();
    } finally {
      await limited.close();
    }
  });

  it('answers any JSON body on every JSON route with a coded 4xx or a success, never a 5xx, and writes nothing on refusal', async () => {
    const routes = [
      { method: 'POST' as const, url: '/v1/devices' },
      { method: 'POST' as const, url: '/v1/enrollment-tokens' },
      { method: 'POST' as const, url: '/v1/enroll' },
      { method: 'PUT' as const, url: '/v1/models/m/aliases/production' },
      { method: 'POST' as const, url: '/v1/admin-tokens' },
    ];
    const body = fc.oneof(
      fc.jsonValue(),
      fc.record({ id: fc.string(), tags: fc.array(fc.string()) }, { requiredKeys: [] }),
      fc.constantFrom(
        '{"__proto__":{"admin":true}}',
        '{"id":"ok-1","tags":["a"],"extra":1}',
        '{"id":5}',
        '[',
        '{"constructor":{"prototype":{}}}',
      ),
    );
    const before = await server.app.inject({ method: 'GET', url: '/v1/devices', headers: server.auth });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), body, async (route, payload) => {
        const response = await server.app.inject({
          ...route,
          headers: { ...server.auth, 'content-type': 'application/json' },
          payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
        });
        expect(response.statusCode, `${route.url} ${response.body}`).toBeLessThan(500);
        if (response.statusCode >= 400) {
          expect(response.headers['content-type']).toContain('application/problem+json');
          expect(response.json().code).toMatch(/^EF_[A-Z_]+$/);
        }
      }),
      { numRuns: 150 },
    );
    expect(({} as { admin?: boolean }).admin).toBeUndefined();
    const after = (await server.app.inject({ method: 'GET', url: '/v1/devices', headers: server.auth })).json();
    // Only well-formed bodies may have created devices, each with a valid id.
    for (const d of after.devices) expect(d.id).toMatch(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/);
    expect(after.devices.length).toBeGreaterThanOrEqual(before.json().devices.length);
  });

  it('answers bodies generated from each route’s own schema (valid ones and ones with a defect) without a 5xx', async () => {
    const spec = (await server.app.inject({ method: 'GET', url: '/docs/json' })).json() as {
      paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema: Record<string, unknown> }> } }>>;
    };
    const routes: { method: 'POST' | 'PUT'; url: string; schema: Record<string, unknown> }[] = [];
    for (const [path, operations] of Object.entries(spec.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const schema = operation.requestBody?.content?.['application/json']?.schema;
        if (schema && (method === 'post' || method === 'put')) {
          routes.push({
            method: method.toUpperCase() as 'POST' | 'PUT',
            url: path.replaceAll('{name}', 'fuzzed').replaceAll('{alias}', 'canary').replaceAll('{id}', 'fuzz-dev'),
            schema,
          });
        }
      }
    }
    expect(routes.map((r) => r.url)).toEqual(
      expect.arrayContaining(['/v1/devices', '/v1/enrollment-tokens', '/v1/enroll', '/v1/admin-tokens']),
    );
    for (const route of routes) {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            validFor(route.schema).map((body) => ({ body, valid: true })),
            invalidFor(route.schema).map((body) => ({ body, valid: false })),
          ),
          async ({ body, valid }) => {
            const response = await server.app.inject({
              method: route.method,
              url: route.url,
              headers: { ...server.auth, 'content-type': 'application/json' },
              payload: JSON.stringify(body),
            });
            expect(response.statusCode, `${route.method} ${route.url} ${JSON.stringify(body)} → ${response.body}`).toBeLessThan(500);
            if (!valid) expect(response.statusCode, `${route.url} accepted ${JSON.stringify(body)}`).toBeGreaterThanOrEqual(400);
            if (response.statusCode >= 400) expect(response.json().code).toMatch(/^EF_[A-Z_]+$/);
          },
        ),
        { numRuns: 40 },
      );
    }
  });
});
