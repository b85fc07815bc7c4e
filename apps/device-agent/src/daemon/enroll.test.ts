/**
 * A device that enrolls over a network that loses the answer: the server created the device, the
 * device never heard. Its retry carries the same Idempotency-Key and gets the first answer: one
 * device, the credential the server made, never a second device or EF_DEVICE_EXISTS.
 */
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../../fleet-server/src/testing.ts';
import { loadOrEnroll } from './index.ts';

let server: TestServer;
let proxy: Server;
const seen: { key: string | undefined; body: string }[] = [];

beforeAll(async () => {
  server = await startTestServer();
  // Forwards enrollments to the server; the first answer is lost on the way back (the socket dies).
  proxy = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ key: request.headers['idempotency-key'] as string | undefined, body });
      const answer = await fetch(`${server.url}${request.url}`, {
        method: request.method ?? 'POST',
        headers: Object.fromEntries(
          Object.entries(request.headers).filter(([name]) => ['content-type', 'idempotency-key'].includes(name)) as [string, string][],
        ),
        body,
      });
      const text = await answer.text();
      if (seen.length === 1) {
        request.socket.destroy();
        return;
      }
      response.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(text);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  proxy?.close();
  await server?.close();
});

describe('enrollment over a lossy network', () => {
  it('retries with the same Idempotency-Key and keeps the one device the server created', async () => {
    const token = (
      await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', headers: server.auth, payload: { uses: 5, tags: ['lossy'] } })
    ).json().token as string;
    const logger = { info: () => undefined, warn: () => undefined, debug: () => undefined } as never;
    const credential = await loadOrEnroll({
      serverUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      dataDir: await mkdtemp(join(tmpdir(), 'edgefleet-enroll-')),
      token,
      logger,
      enrollRetry: { initialMs: 10, maxMs: 20 },
    });
    expect(seen).toHaveLength(2);
    expect(seen[0]?.key).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[1]?.key).toBe(seen[0]?.key);
    const devices = (await server.app.inject({ method: 'GET', url: '/v1/devices?tag=lossy', headers: server.auth })).json().devices;
    expect(devices.map((d: { id: string }) => d.id)).toEqual([credential.id]);
    // The credential works: the server's own answer, replayed.
    const basic = Buffer.from(`${credential.id}:${credential.secret}`).toString('base64');
    const keyset = await server.app.inject({
      method: 'GET',
      url: '/v1/artifacts/0000000000000000000000000000000000000000000000000000000000000000',
      headers: { authorization: `Basic ${basic}` },
    });
    expect(keyset.json().code).toBe('EF_NOT_FOUND'); // authenticated (a wrong secret would be 401)
  });
});
