import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing.ts';

/** A dashboard build of our own: the server serves whatever folder EDGEFLEET_DASHBOARD names. */
async function fakeBuild(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgefleet-dashboard-'));
  await mkdir(join(dir, 'assets'));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>t</title><script type="module" src="/assets/app-1a2b.js"></script>');
  await writeFile(join(dir, 'assets', 'app-1a2b.js'), `export const app = ${JSON.stringify('x'.repeat(4000))};`);
  await writeFile(join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"><title>f</title></svg>');
  return dir;
}

describe('the dashboard at /', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ dashboard: await fakeBuild() });
  });
  afterAll(() => server.close());

  it('answers its page for every view’s path, under a CSP that allows no inline script', async () => {
    for (const url of [
      '/',
      '/login?next=%2Frollouts',
      '/rollouts/ro-12345678',
      '/models/mlp/versions/1.0.0',
      '/drift/mlp/1.0.0?group=*',
      '/devices/cam-1',
    ]) {
      const page = await server.app.inject({ method: 'GET', url });
      expect(page.statusCode, url).toBe(200);
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(page.body).toContain('/assets/app-1a2b.js');
      expect(page.headers['cache-control']).toBe('no-cache');
      const csp = String(page.headers['content-security-policy']);
      const scripts = /script-src ([^;]+)/.exec(csp)?.[1] ?? /default-src ([^;]+)/.exec(csp)?.[1];
      expect(scripts).toBe("'self'");
      expect(csp).toContain("frame-ancestors 'self'");
    }
  });

  it('serves hashed assets compressed and cached for good, revalidates by ETag, and nothing else', async () => {
    const asset = await server.app.inject({ method: 'GET', url: '/assets/app-1a2b.js', headers: { 'accept-encoding': 'gzip, br' } });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['content-encoding']).toBe('gzip');
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(gunzipSync(asset.rawPayload).toString()).toContain('export const app');
    const again = await server.app.inject({
      method: 'GET',
      url: '/assets/app-1a2b.js',
      headers: { 'if-none-match': String(asset.headers.etag) },
    });
    expect(again.statusCode).toBe(304);
    expect((await server.app.inject({ method: 'GET', url: '/favicon.svg' })).headers['content-type']).toBe('image/svg+xml');
    // Paths that are not files of the build, and traversal attempts, are 404s; the API keeps its problems.
    for (const url of ['/assets/missing.js', '/assets/../index.html', '/assets/%2e%2e/%2e%2e/package.json', '/etc/passwd']) {
      const missing = await server.app.inject({ method: 'GET', url });
      expect(missing.statusCode, url).toBe(404);
      expect(missing.body).not.toContain('"version"');
    }
    const api = await server.app.inject({ method: 'GET', url: '/v1/nothing-here', headers: server.auth });
    expect(api.json()).toMatchObject({ status: 404, code: 'EF_NOT_FOUND' });
  });
});

describe('the dashboard setting', () => {
  it('off: no page at /', async () => {
    const server = await startTestServer({ dashboard: 'off' });
    try {
      expect((await server.app.inject({ method: 'GET', url: '/' })).statusCode).toBe(404);
      expect((await server.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('a folder without a build: / says how to build it, and the API works', async () => {
    const server = await startTestServer({ dashboard: await mkdtemp(join(tmpdir(), 'edgefleet-empty-')) });
    try {
      const page = await server.app.inject({ method: 'GET', url: '/' });
      expect(page.statusCode).toBe(503);
      expect(page.body).toContain('pnpm build');
      expect((await server.app.inject({ method: 'GET', url: '/v1/whoami', headers: server.auth })).statusCode).toBe(200);
    } finally {
      await server.close();
    }
  });
});
