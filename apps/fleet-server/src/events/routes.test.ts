/**
 * GET /v1/events: a rollout's changes arrive as they happen (no polling), in order, filtered by
 * rollout when asked; credentials first; the stream ends when the server closes.
 */
import { mlpModel } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  const upload = await server.app.inject({
    method: 'POST',
    url: '/v1/models/mlp/versions',
    headers: server.auth,
    payload: uploadForm('1.0.0', mlpModel(3).bytes),
  });
  expect(upload.statusCode).toBe(201);
  for (const id of ['ev-1', 'ev-2', 'ev-3']) {
    await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id, tags: [`g=${id}`] } });
  }
});
afterAll(async () => {
  await server?.close();
});

interface Received {
  readonly event: string;
  readonly id: number;
  readonly data: { id?: string; state?: string };
}

/** Opens the stream and collects its events; `until` resolves once one matches. */
async function subscribe(query = '') {
  const controller = new AbortController();
  const response = await fetch(`${server.url}/v1/events${query}`, { headers: server.auth, signal: controller.signal });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/event-stream');
  const events: Received[] = [];
  const waiters: { match: (e: Received) => boolean; resolve: () => void }[] = [];
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  void (async () => {
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const field = (name: string) =>
          block
            .split('\n')
            .find((l) => l.startsWith(`${name}: `))
            ?.slice(name.length + 2);
        const event = field('event');
        if (!event) continue;
        const received = { event, id: Number(field('id')), data: JSON.parse(field('data') ?? '{}') };
        events.push(received);
        for (const waiter of waiters.filter((w) => w.match(received))) waiter.resolve();
      }
    }
  })();
  return {
    events,
    until: (match: (e: Received) => boolean) =>
      events.some(match) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ match, resolve })),
    close: () => controller.abort(),
  };
}

const call = (method: 'POST', url: string, payload?: object) =>
  server.app.inject({ method, url, headers: server.auth, ...(payload ? { payload } : {}) });

describe('GET /v1/events', () => {
  it('streams each rollout change as it happens, in order, and only the asked rollout’s when filtered', async () => {
    const all = await subscribe();
    await all.until((e) => e.event === 'ready');
    const created = (
      await call('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { devices: ['ev-1'] }, stages: [{ percent: 100 }] })
    ).json();
    const one = await subscribe(`?rollout=${created.id}`);
    await one.until((e) => e.event === 'ready');
    await all.until((e) => e.event === 'rollout' && e.data.id === created.id && e.data.state === 'running');

    const other = (
      await call('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { devices: ['ev-2'] }, stages: [{ percent: 100 }] })
    ).json();
    await call('POST', `/v1/rollouts/${created.id}/pause`);
    await one.until((e) => e.data.state === 'paused');
    await all.until((e) => e.data.id === created.id && e.data.state === 'paused');
    await call('POST', `/v1/rollouts/${created.id}/abort`);
    await one.until((e) => e.data.state === 'aborted');
    // The witness that the filtered stream had its chance to see the other rollout: the unfiltered one saw it.
    await all.until((e) => e.data.id === other.id);
    expect(one.events.filter((e) => e.event === 'rollout').every((e) => e.data.id === created.id)).toBe(true);
    const states = one.events.filter((e) => e.event === 'rollout').map((e) => e.data.state);
    expect(states.indexOf('paused')).toBeLessThan(states.lastIndexOf('aborted'));
    const ids = all.events.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    // A summary, as the list gives it: no per-device list riding along.
    expect(one.events.find((e) => e.event === 'rollout')?.data).not.toHaveProperty('devices');
    all.close();
    one.close();
  });

  it('asks for credentials before streaming anything', async () => {
    const response = await fetch(`${server.url}/v1/events`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ code: 'EF_UNAUTHORIZED' });
    expect((await fetch(`${server.url}/v1/events?rollout=nope`, { headers: server.auth })).status).toBe(400);
  });

  it('ends open streams when the server closes, instead of holding its shutdown', async () => {
    const other = await startTestServer();
    const response = await fetch(`${other.url}/v1/events`, { headers: other.auth });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await other.close();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }
  });
});
