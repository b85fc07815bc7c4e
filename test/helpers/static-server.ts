/** A loopback HTTP server for browser tests: serves fixed in-memory files, nothing else. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StaticFile {
  readonly body: string | Uint8Array;
  readonly type: string;
}

export interface StaticServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function serveFiles(files: Readonly<Record<string, StaticFile>>): Promise<StaticServer> {
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const file = Object.hasOwn(files, path) ? files[path] : undefined;
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}
