/**
 * A loopback HTTP server for browser tests: fixed in-memory files plus folders from disk (e.g.
 * onnxruntime-web's dist/), with the COOP/COEP headers that make a page cross-origin isolated
 * (WASM threads need SharedArrayBuffer).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, normalize } from 'node:path';

export interface StaticFile {
  readonly body: string | Uint8Array;
  readonly type: string;
}

export interface StaticServer {
  readonly url: string;
  /** Paths requested so far. */
  readonly requests: string[];
  set(path: string, file: StaticFile): void;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.mjs': 'text/javascript',
  '.js': 'text/javascript',
  '.wasm': 'application/wasm',
  '.html': 'text/html',
  '.onnx': 'application/octet-stream',
};

export async function serveFiles(
  files: Readonly<Record<string, StaticFile>>,
  folders: Readonly<Record<string, string>> = {},
): Promise<StaticServer> {
  const table = new Map(Object.entries(files));
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer(async (request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    requests.push(path);
    const headers = {
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      // Model servers are another origin than the page: allow the fetch (CORS) and the embedding (CORP).
      'access-control-allow-origin': '*',
      'access-control-allow-headers': 'range',
      'cross-origin-resource-policy': 'cross-origin',
      'cache-control': 'no-store',
    };
    let file = table.get(path);
    if (!file) {
      const prefix = Object.keys(folders).find((p) => path.startsWith(p));
      const relative = prefix ? normalize(path.slice(prefix.length)) : '';
      if (prefix && relative && !relative.startsWith('..')) {
        const body = await readFile(join(folders[prefix] as string, relative)).catch(() => undefined);
        if (body) file = { body: new Uint8Array(body), type: TYPES[extname(relative)] ?? 'application/octet-stream' };
      }
    }
    if (!file) {
      response.writeHead(404, headers).end();
      return;
    }
    response.writeHead(200, { ...headers, 'content-type': file.type, 'content-length': Buffer.byteLength(file.body) }).end(file.body);
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
    set: (path, file) => table.set(path, file),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
