/**
 * Serves the web dashboard (apps/dashboard, built by Vite into this package's `dashboard/` folder)
 * at `/`: its page for every view's path (deep links work on reload), its hashed assets cached for
 * good, each file gzip-compressed once at start. The page runs under the server's CSP: scripts and
 * styles from this origin only, no inline script; it talks to the API with the token its user gives.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** The paths of the dashboard's views: each answers its page (the app routes on the client). */
export const DASHBOARD_VIEWS = ['/', '/login', '/devices', '/models', '/rollouts', '/drift'] as const;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};

interface StaticFile {
  readonly type: string;
  readonly body: Buffer;
  readonly gzip: Buffer | undefined;
  readonly etag: string;
}

/** The dashboard built into this package (from src/ or dist/ alike: both sit one level under the package root). */
export function bundledDashboardDir(): string {
  return fileURLToPath(new URL('../../dashboard/', import.meta.url));
}

function load(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder)) {
      const path = join(folder, entry);
      if (statSync(path).isDirectory()) walk(path);
      else {
        const body = readFileSync(path);
        const type = TYPES[extname(path)] ?? 'application/octet-stream';
        const compressible = /^(text\/|application\/json|image\/svg)/.test(type) && body.length > 512;
        files.set(`/${relative(dir, path).split(sep).join('/')}`, {
          type,
          body,
          gzip: compressible ? gzipSync(body, { level: 9 }) : undefined,
          etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
        });
      }
    }
  };
  walk(dir);
  return files;
}

function send(request: FastifyRequest, reply: FastifyReply, file: StaticFile, cacheControl: string) {
  reply.header('cache-control', cacheControl).header('etag', file.etag).header('vary', 'accept-encoding');
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  reply.type(file.type);
  if (file.gzip && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) {
    return reply.header('content-encoding', 'gzip').send(file.gzip);
  }
  return reply.send(file.body);
}

/**
 * `setting`: EDGEFLEET_DASHBOARD (on, off, or a folder). A missing build (a source checkout not
 * built yet) is no error: `/` says how to build it, the API works as ever.
 */
export function registerDashboardRoutes(app: FastifyInstance, setting: string, log: { warn(obj: object, msg: string): void }): void {
  if (setting === 'off') return;
  const dir = setting === 'on' ? bundledDashboardDir() : setting;
  const built = existsSync(join(dir, 'index.html'));
  if (!built) log.warn({ dir }, 'no dashboard build found: / explains how to build it');
  const files = built ? load(dir) : new Map<string, StaticFile>();
  const page = files.get('/index.html');
  const hide = { schema: { hide: true } };

  const view = async (request: FastifyRequest, reply: FastifyReply) => {
    if (!page) {
      return reply
        .code(503)
        .type('text/plain; charset=utf-8')
        .header('cache-control', 'no-store')
        .send(
          `The dashboard is not built in ${dir}: run \`pnpm build\` in the edgefleet repository (the API under /v1 works without it).\n`,
        );
    }
    // The page is small and names its hashed assets: always revalidated, so a new version shows at once.
    return send(request, reply, page, 'no-cache');
  };
  for (const path of DASHBOARD_VIEWS) {
    app.get(path, hide, view);
    if (path !== '/') app.get(`${path}/*`, hide, view);
  }
  app.get('/assets/*', hide, async (request, reply) => {
    const file = files.get(request.url.split('?')[0] ?? '');
    if (!file) return reply.callNotFound();
    return send(request, reply, file, 'public, max-age=31536000, immutable');
  });
  for (const [path, file] of files) {
    if (path.startsWith('/assets/') || path === '/index.html') continue;
    app.get(path, hide, async (request, reply) => send(request, reply, file, 'public, max-age=3600'));
  }
}
