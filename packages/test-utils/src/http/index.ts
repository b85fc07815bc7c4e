/**
 * The one fixture HTTP server of the tests, on loopback: it serves files the way a real artifact
 * server does (Range, ETag, Content-Length) and misbehaves on demand (cut connections, endless
 * data, a 1 byte/s drip, server errors); it also serves folders from disk (onnxruntime-web's dist/
 * for browser pages) with the headers that make a page cross-origin isolated (COOP/COEP: WASM
 * threads need SharedArrayBuffer) and let another origin's page fetch from it (CORS, CORP).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, normalize } from 'node:path';

export interface ArtifactFaults {
  /** Destroy the connection after this many body bytes, on the first N requests. */
  readonly cutAfterBytes?: number;
  readonly cutTimes?: number;
  /** Answer the first N requests with this status (e.g. 503). */
  readonly failStatus?: number;
  readonly failTimes?: number;
  /** Keep sending bytes after the real content, forever (endless-data attack). */
  readonly endless?: boolean;
  /** Send at most this many bytes per second (slow-retrieval attack). */
  readonly bytesPerSecond?: number;
  /** Ignore Range headers (answer 200 with the whole body). */
  readonly ignoreRange?: boolean;
  /** Announce this Content-Length instead of the real one. */
  readonly announceLength?: number;
}

export interface ArtifactServer {
  readonly url: string;
  /** Every request seen: path and Range header. */
  readonly requests: { path: string; range?: string }[];
  set(path: string, body: Uint8Array | string, faults?: ArtifactFaults & { readonly type?: string }): void;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.mjs': 'text/javascript',
  '.js': 'text/javascript',
  '.wasm': 'application/wasm',
  '.html': 'text/html',
  '.json': 'application/json',
  '.onnx': 'application/octet-stream',
};

const HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  // A page of another origin may fetch (CORS) and embed (CORP) what this server holds.
  'access-control-allow-origin': '*',
  'access-control-allow-headers': 'range',
  'cross-origin-resource-policy': 'cross-origin',
  'cache-control': 'no-store',
};

export async function createArtifactServer(options: { readonly folders?: Readonly<Record<string, string>> } = {}): Promise<ArtifactServer> {
  const files = new Map<string, { body: Uint8Array; type: string; faults: ArtifactFaults; served: number }>();
  const folders = options.folders ?? {};
  /** A file set in memory, or one under a served folder (never outside it). */
  async function lookup(path: string) {
    const set = files.get(path);
    if (set) return set;
    const prefix = Object.keys(folders).find((p) => path.startsWith(p));
    const relative = prefix ? normalize(path.slice(prefix.length)) : '';
    if (!prefix || !relative || relative.startsWith('..')) return undefined;
    const body = await readFile(join(folders[prefix] as string, relative)).catch(() => undefined);
    return body
      ? { body: new Uint8Array(body), type: TYPES[extname(relative)] ?? 'application/octet-stream', faults: {}, served: 0 }
      : undefined;
  }
  const requests: ArtifactServer['requests'] = [];
  const sockets = new Set<Socket>();

  const server: Server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const range = request.headers.range;
    requests.push({ path, ...(range ? { range } : {}) });
    const file = await lookup(path);
    if (!file) {
      response.writeHead(404, HEADERS).end();
      return;
    }
    const attempt = file.served++;
    const { body, faults } = file;
    if (faults.failStatus && attempt < (faults.failTimes ?? 1)) {
      response.writeHead(faults.failStatus, HEADERS).end();
      return;
    }
    let start = 0;
    const match = /^bytes=(\d+)-$/.exec(range ?? '');
    if (match && !faults.ignoreRange) start = Number(match[1]);
    const slice = body.subarray(start);
    const headers: Record<string, string | number> = {
      ...HEADERS,
      'content-type': file.type,
      'accept-ranges': 'bytes',
      etag: '"fixture"',
    };
    if (!faults.endless) headers['content-length'] = faults.announceLength ?? slice.length;
    if (start > 0) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    response.writeHead(start > 0 ? 206 : 200, headers);
    const cut = faults.cutAfterBytes !== undefined && attempt < (faults.cutTimes ?? 1) ? faults.cutAfterBytes : undefined;
    void stream(response, slice, faults, cut);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    set: (path, body, { type = TYPES[extname(path)] ?? 'application/octet-stream', ...faults } = {}) =>
      files.set(path, { body: typeof body === 'string' ? new TextEncoder().encode(body) : body, type, faults, served: 0 }),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function stream(response: ServerResponse, body: Uint8Array, faults: ArtifactFaults, cutAfter: number | undefined): Promise<void> {
  const chunk = faults.bytesPerSecond ? Math.max(1, Math.floor(faults.bytesPerSecond / 10)) : 16 * 1024;
  const delay = faults.bytesPerSecond ? 100 : 0;
  let sent = 0;
  const write = async (bytes: Uint8Array) => {
    if (response.destroyed) return false;
    if (cutAfter !== undefined && sent + bytes.length > cutAfter) {
      response.write(bytes.subarray(0, cutAfter - sent));
      await new Promise((resolve) => setTimeout(resolve, 20));
      response.socket?.destroy();
      return false;
    }
    sent += bytes.length;
    if (!response.write(bytes)) await new Promise((resolve) => response.once('drain', resolve));
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
    return true;
  };
  for (let i = 0; i < body.length; i += chunk) {
    if (!(await write(body.subarray(i, i + chunk)))) return;
  }
  // Endless data: keep going until the client hangs up (bounded so a test can never run forever).
  for (let extra = 0; faults.endless && extra < 64 * 1024 * 1024; extra += chunk) {
    if (!(await write(new Uint8Array(chunk).fill(7)))) return;
  }
  response.end();
}
