/**
 * The OpenAPI document is the contract (issue 14): valid OpenAPI 3.1 by a real validator, every
 * operation named, tagged, with its answers and problem responses described, public routes public.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing.ts';
import { OPERATIONS, TAGS } from './openapi.ts';

interface OperationObject {
  operationId?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> };
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

let server: TestServer;
let spec: { openapi: string; paths: Record<string, Record<string, OperationObject>>; components: { schemas: Record<string, unknown> } };
beforeAll(async () => {
  server = await startTestServer();
  spec = (await server.app.inject({ method: 'GET', url: '/docs/json' })).json();
});
afterAll(async () => {
  await server.close();
});

const operations = () =>
  Object.entries(spec.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ key: `${method.toUpperCase()} ${path}`, operation })),
  );

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1', async () => {
    expect(spec.openapi).toBe('3.1.0');
    const validator = new Validator();
    const result = await validator.validate(structuredClone(spec));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('names, tags and describes every operation, with its answers and its problems', () => {
    const all = operations();
    expect(all.length).toBe(Object.keys(OPERATIONS).length);
    const ids = all.map((o) => o.operation.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    const tags = new Set<string>(TAGS.map((t) => t.name));
    for (const { key, operation } of all) {
      expect(operation.operationId, key).toMatch(/^[a-z][A-Za-z]+$/);
      expect(operation.tags?.length, key).toBe(1);
      expect(tags.has(operation.tags?.[0] ?? ''), key).toBe(true);
      const success = Object.entries(operation.responses).filter(([code]) => /^[23]/.test(code));
      expect(success.length, `${key} documents no answer`).toBeGreaterThan(0);
      for (const [code, response] of success) {
        if (code === '204' || code === '304') continue;
        const media = Object.values(response.content ?? {});
        expect(media.length, `${key} ${code} has no content`).toBeGreaterThan(0);
        for (const m of media) expect(m.schema, `${key} ${code} has no schema`).toBeDefined();
      }
      for (const code of ['4XX', '5XX']) {
        expect(operation.responses[code]?.content?.['application/problem+json']?.schema, `${key} ${code}`).toEqual({
          $ref: '#/components/schemas/Problem',
        });
      }
    }
  });

  it('asks for no credential on public routes, and for a token (or a device’s own) elsewhere', () => {
    const byKey = new Map(operations().map((o) => [o.key, o.operation]));
    for (const key of ['POST /v1/enroll', 'GET /v1/keyset', 'GET /healthz', 'GET /readyz'])
      expect(byKey.get(key)?.security, key).toEqual([]);
    expect(byKey.get('GET /v1/devices')?.security).toEqual([{ bearer: [] }]);
    expect(byKey.get('GET /v1/artifacts/{sha256}')?.security).toEqual([{ bearer: [] }, { device: [] }]);
  });

  it('describes the bodies routes read themselves: the multipart upload and the reference dataset', () => {
    const upload = spec.paths['/v1/models/{name}/versions']?.post?.requestBody?.content['multipart/form-data']?.schema;
    expect(Object.keys(upload?.properties ?? {})).toEqual(
      expect.arrayContaining(['version', 'model', 'reference', 'telemetry', 'sampleInputs']),
    );
    const reference = spec.paths['/v1/models/{name}/versions/{version}/reference']?.put?.requestBody?.content ?? {};
    expect(Object.keys(reference)).toEqual(expect.arrayContaining(['text/csv', 'application/x-ndjson']));
  });

  it('names the protocol documents as components', () => {
    expect(Object.keys(spec.components.schemas)).toEqual(
      expect.arrayContaining(['SignedManifest', 'SignedDesiredState', 'SignedKeySet', 'ReportedState', 'Problem']),
    );
  });
});
