/**
 * Every list pages the same way, tested as a client walks it: `limit`, the opaque `next` cursor,
 * every row exactly once across pages (also when rows are added between two pages), a cursor of
 * another list or other filters refused, unknown query parameters refused on every route.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing.ts';

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
  for (let i = 0; i < 25; i++) {
    const id = `page-${String(i).padStart(2, '0')}`;
    const tags = [i % 2 === 0 ? 'parity=even' : 'parity=odd', 'fleet=paging'];
    const response = await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id, tags } });
    expect(response.statusCode).toBe(201);
  }
});
afterAll(async () => {
  await server?.close();
});

async function get(url: string) {
  const response = await server.app.inject({ method: 'GET', url, headers: server.auth });
  return { status: response.statusCode, body: response.json() };
}

/** Follows `next` from the first page; returns every page's items. */
async function walk(path: string, key: string, limit: number): Promise<unknown[][]> {
  const pages: unknown[][] = [];
  let cursor: string | null = null;
  do {
    const separator = path.includes('?') ? '&' : '?';
    const { status, body } = await get(`${path}${separator}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(status).toBe(200);
    pages.push(body[key]);
    cursor = body.next;
    expect(pages.length).toBeLessThan(100);
  } while (cursor);
  return pages;
}

describe('paging', () => {
  it('walks every device exactly once, in order, whatever the page size', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 30 }), async (limit) => {
        const pages = await walk('/v1/devices?tag=fleet=paging', 'devices', limit);
        const ids = pages.flat().map((d) => (d as { id: string }).id);
        expect(ids).toEqual(Array.from({ length: 25 }, (_, i) => `page-${String(i).padStart(2, '0')}`));
        expect(pages.length).toBe(Math.max(1, Math.ceil(25 / limit)));
      }),
      { numRuns: 12 },
    );
  });

  it('honours filters across pages', async () => {
    const even = (await walk('/v1/devices?tag=parity=even', 'devices', 4)).flat().map((d) => (d as { id: string }).id);
    expect(even).toHaveLength(13);
    expect(even.every((id) => Number(id.slice(5)) % 2 === 0)).toBe(true);
  });

  it('neither repeats nor skips a row when rows are added between two pages', async () => {
    const first = await get('/v1/devices?tag=fleet=paging&limit=10');
    // Added before the cursor's position (sorts first) and after it.
    for (const id of ['page-00a', 'page-99']) {
      await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id, tags: ['fleet=paging'] } });
    }
    const rest: string[] = [];
    let cursor: string | null = first.body.next;
    while (cursor) {
      const page = await get(`/v1/devices?tag=fleet=paging&limit=10&cursor=${cursor}`);
      rest.push(...page.body.devices.map((d: { id: string }) => d.id));
      cursor = page.body.next;
    }
    const seen = [...first.body.devices.map((d: { id: string }) => d.id), ...rest];
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toContain('page-24');
    expect(seen).toContain('page-99');
    for (const id of ['page-00a', 'page-99']) {
      await server.app.inject({ method: 'DELETE', url: `/v1/devices/${id}`, headers: server.auth });
    }
  });

  it('pages the audit log, models, rollouts and telemetry windows the same way', async () => {
    const audit = (await walk('/v1/audit?action=device.create', 'entries', 7)).flat();
    expect(audit.length).toBeGreaterThanOrEqual(25);
    expect(new Set(audit.map((e) => JSON.stringify(e))).size).toBe(audit.length);
    for (const [path, key] of [
      ['/v1/models', 'models'],
      ['/v1/rollouts', 'rollouts'],
      ['/v1/telemetry/windows', 'windows'],
      ['/v1/drift/alerts', 'alerts'],
      ['/v1/drift/scores?model=none&version=1.0.0', 'scores'],
    ] as const) {
      const { status, body } = await get(`${path}${path.includes('?') ? '&' : '?'}limit=5`);
      expect(status, path).toBe(200);
      expect(body).toMatchObject({ [key]: [], next: null });
    }
  });

  it('refuses a cursor of another list or of other filters, a forged one, and a limit out of range', async () => {
    const { body } = await get('/v1/devices?tag=fleet=paging&limit=5');
    const cursor = body.next as string;
    for (const url of [
      `/v1/devices?tag=parity=odd&limit=5&cursor=${cursor}`,
      `/v1/audit?limit=5&cursor=${cursor}`,
      `/v1/devices?tag=fleet=paging&limit=5&cursor=${Buffer.from('{"v":1,"f":"x","k":["page-10"]}').toString('base64url')}`,
      '/v1/devices?cursor=not-a-cursor',
    ]) {
      const refused = await get(url);
      expect(refused.status, url).toBe(400);
      expect(refused.body.code, url).toBe('EF_CURSOR_INVALID');
    }
    for (const limit of ['0', '1001', '-1', 'ten']) {
      const refused = await get(`/v1/devices?limit=${limit}`);
      expect(refused.status, limit).toBe(400);
      expect(refused.body.code).toBe('EF_SCHEMA_INVALID');
    }
  });

  it('refuses unknown query parameters on every API route alike', async () => {
    for (const url of [
      '/v1/devices?tags=fleet=paging',
      '/v1/models?name=x',
      '/v1/rollouts?status=running',
      '/v1/keyset?x=1',
      '/v1/devices/page-01?verbose=1',
    ]) {
      const refused = await server.app.inject({ method: 'GET', url, headers: server.auth });
      expect(refused.statusCode, url).toBe(400);
      expect(refused.json().code, url).toBe('EF_SCHEMA_INVALID');
    }
    // The rollout list honours its state filter.
    expect((await get('/v1/rollouts?state=running')).status).toBe(200);
  });
});
