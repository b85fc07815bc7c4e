/**
 * A loopback HTTP server that serves artifacts the way a real one does (Range, ETag, Content-Length)
 * and misbehaves on demand: cut connections, endless data, a 1 byte/s drip, server errors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

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
  set(path: string, body: Uint8Array, faults?: ArtifactFaults): void;
  close(): Promise<void>;
}

export async function createArtifactServer(): Promise<ArtifactServer> {
  const files = new Map<string, { body: Uint8Array; faults: ArtifactFaults; served: number }>();
  const requests: ArtifactServer['requests'] = [];
  const sockets = new Set<Socket>();

  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const range = request.headers.range;
    requests.push({ path, ...(range ? { range } : {}) });
    const file = files.get(path);
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    const attempt = file.served++;
    const { body, faults } = file;
    if (faults.failStatus && attempt < (faults.failTimes ?? 1)) {
      response.writeHead(faults.failStatus).end();
      return;
    }
    let start = 0;
    const match = /^bytes=(\d+)-$/.exec(range ?? '');
    if (match && !faults.ignoreRange) start = Number(match[1]);
    const slice = body.subarray(start);
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
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
    set: (path, body, faults = {}) => files.set(path, { body, faults, served: 0 }),
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
