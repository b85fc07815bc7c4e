/**
 * @edgefleet/client against a real fleet server: typed calls, typed EF_ errors, paging to the end,
 * retries that never create twice, uploads with progress.
 */
import { mlpModel } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../../apps/fleet-server/src/testing.ts';
import { createClient, EdgefleetApiError, EdgefleetConnectionError, isApiError, ok } from './index.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const client = (fetch?: typeof globalThis.fetch) =>
  createClient({ baseUrl: server.url, token: server.token, retryDelayMs: 1, ...(fetch ? { fetch } : {}) });

async function deviceCount(): Promise<number> {
  let n = 0;
  for await (const _ of client().items('/v1/devices', { params: { query: { limit: '1000' } } })) n++;
  return n;
}

describe('@edgefleet/client', () => {
  it('calls the API typed, and maps problems to typed errors with their EF_ code', async () => {
    const fleet = client();
    const me = await ok(fleet.api.GET('/v1/whoami'));
    expect(me.scope).toBe('admin');
    const error = await fleet.api.GET('/v1/devices/{id}', { params: { path: { id: 'nobody' } } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EdgefleetApiError);
    expect(error).toMatchObject({ status: 404, code: 'EF_DEVICE_UNKNOWN', instance: expect.stringMatching(/^urn:uuid:/) });
    expect(isApiError(error, 'EF_DEVICE_UNKNOWN')).toBe(true);
    const denied = await createClient({ baseUrl: server.url, token: 'efa_nope_nope' })
      .api.GET('/v1/devices')
      .catch((e: unknown) => e);
    expect(denied).toMatchObject({ status: 401, code: 'EF_UNAUTHORIZED' });
  });

  it('walks a list page by page to its end', async () => {
    const fleet = client();
    for (let i = 0; i < 25; i++) await ok(fleet.api.POST('/v1/devices', { body: { id: `paged-${i}`, tags: ['paging=yes'] } }));
    const ids: string[] = [];
    for await (const device of fleet.items('/v1/devices', { params: { query: { tag: 'paging=yes', limit: '10' } } })) ids.push(device.id);
    expect(ids).toHaveLength(25);
    expect(new Set(ids).size).toBe(25);
    let pages = 0;
    for await (const page of fleet.pages('/v1/devices', { params: { query: { tag: 'paging=yes', limit: '10' } } })) {
      pages++;
      expect(page.devices.length).toBeLessThanOrEqual(10);
    }
    expect(pages).toBe(3);
  });

  it('retries a creation whose answer was lost under the same Idempotency-Key: one device, the first answer', async () => {
    const before = await deviceCount();
    const keys: string[] = [];
    let lost = false;
    const flaky: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      if (request.method === 'POST') keys.push(request.headers.get('idempotency-key') ?? '');
      const response = await fetch(request);
      if (request.method === 'POST' && !lost) {
        lost = true; // the server created it; the answer never arrives
        throw new TypeError('fetch failed', { cause: new Error('socket hang up') });
      }
      return response;
    };
    const created = await ok(client(flaky).api.POST('/v1/devices', { body: { tags: ['retried=yes'] } }));
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(await deviceCount()).toBe(before + 1);
    const listed = await ok(client().api.GET('/v1/devices', { params: { query: { tag: 'retried=yes' } } }));
    expect(listed.devices.map((d) => d.id)).toEqual([created.id]);
  });

  it('retries 503 after Retry-After, and never retries a POST that is not safe to repeat', async () => {
    let attempts = 0;
    const busy: typeof fetch = async (input, init) => {
      attempts++;
      if (attempts === 1) return new Response('', { status: 503, headers: { 'retry-after': '0' } });
      return fetch(input, init);
    };
    expect((await ok(client(busy).api.GET('/v1/whoami'))).scope).toBe('admin');
    expect(attempts).toBe(2);

    let promotes = 0;
    const down: typeof fetch = async () => {
      promotes++;
      throw new TypeError('fetch failed');
    };
    const error = await client(down)
      .api.POST('/v1/rollouts/{id}/promote', { params: { path: { id: 'ro-00000000' } } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EdgefleetConnectionError);
    expect(promotes).toBe(1);
  });

  it('says which server it cannot reach, after its retries', async () => {
    const error = await createClient({ baseUrl: 'http://127.0.0.1:9', retries: 2, retryDelayMs: 1 })
      .api.GET('/healthz')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EdgefleetConnectionError);
    expect(String((error as Error).message)).toMatch(/^cannot reach http:\/\/127\.0\.0\.1:9/);
  });

  it('follows the server’s events: a rollout’s changes arrive as they happen', async () => {
    const fleet = client();
    await fleet.uploadModelVersion({ name: 'evented', version: '1.0.0', model: mlpModel(32).bytes });
    await ok(fleet.api.POST('/v1/devices', { body: { id: 'evented-1' } }));
    const controller = new AbortController();
    const seen: string[] = [];
    const stream = (async () => {
      for await (const event of fleet.events({ signal: controller.signal })) {
        if (event.event === 'ready') {
          const created = await ok(
            fleet.api.POST('/v1/rollouts', {
              body: { model: 'evented', version: '1.0.0', selector: { devices: ['evented-1'] }, stages: [{ percent: 100 }] },
            }),
          );
          await ok(fleet.api.POST('/v1/rollouts/{id}/pause', { params: { path: { id: created.id } } }));
        }
        if (event.event === 'rollout') {
          seen.push(event.data.state);
          if (event.data.state === 'paused') controller.abort();
        }
      }
    })();
    await stream;
    expect(seen.at(-1)).toBe('paused');
  });

  it('uploads a model version with progress, and a retry with its key registers it once', async () => {
    const fleet = client();
    const model = mlpModel(31).bytes;
    const progress: number[] = [];
    const upload = {
      name: 'client-up',
      version: '1.0.0',
      model,
      fields: { metadata: { team: 'edge' } },
      idempotencyKey: 'client-upload-1',
      onProgress: ({ sent, total }: { sent: number; total: number }) => progress.push(sent / total),
    };
    const created = await fleet.uploadModelVersion(upload);
    expect(created).toMatchObject({ name: 'client-up', version: '1.0.0', size: model.length });
    expect(created.manifest.payload.metadata).toEqual({ team: 'edge' });
    expect(progress.at(-1)).toBe(1);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const again = await fleet.uploadModelVersion(upload);
    expect(again.sha256).toBe(created.sha256);
    const versions = await ok(fleet.api.GET('/v1/models/{name}/versions', { params: { path: { name: 'client-up' } } }));
    expect(versions.versions).toHaveLength(1);
    const clash = await fleet.uploadModelVersion({ ...upload, idempotencyKey: 'client-upload-2' }).catch((e: unknown) => e);
    expect(clash).toMatchObject({ status: 409, code: 'EF_MODEL_VERSION_EXISTS' });
  });
});
