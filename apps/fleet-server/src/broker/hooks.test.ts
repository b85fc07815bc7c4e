/**
 * The HTTP hooks an external broker (EMQX) calls: the same device rules as the embedded broker,
 * and nothing for a caller without the hook secret (refused before its body is read).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing.ts';

const SECRET = 'hook-secret-0123456789abcdefghijklmnop';
const SERVER_USER = { username: 'edgefleet-server', password: 'server-password-0123456789' };
let server: TestServer;
let secret: string;

beforeAll(async () => {
  server = await startTestServer({
    brokerAuth: 'http',
    brokerHookSecret: SECRET,
    brokerUsername: SERVER_USER.username,
    brokerPassword: SERVER_USER.password,
  });
  secret = (await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id: 'cam-1' } })).json().secret;
  await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id: 'cam-gone' } });
});
afterAll(() => server.close());

const hook = (path: 'authenticate' | 'authorize', payload: unknown, authorization = `Bearer ${SECRET}`) =>
  server.app.inject({ method: 'POST', url: `/v1/broker/${path}`, headers: { authorization }, payload: payload as object });

describe('broker hooks (EDGEFLEET_BROKER_AUTH=http)', () => {
  it('lets a device in with its own id and secret, and the server with its credentials; nobody else', async () => {
    expect((await hook('authenticate', { clientid: 'cam-1', username: 'cam-1', password: secret })).json()).toEqual({
      result: 'allow',
      is_superuser: false,
    });
    expect((await hook('authenticate', { clientid: 'edgefleet-server-x', ...SERVER_USER })).json()).toEqual({
      result: 'allow',
      is_superuser: true,
    });
    for (const attempt of [
      { clientid: 'cam-1', username: 'cam-1', password: 'wrong' },
      { clientid: 'cam-2', username: 'cam-1', password: secret }, // someone else's client id
      { clientid: 'nobody', username: 'nobody', password: secret },
      { clientid: 'x', username: SERVER_USER.username, password: 'guess' },
    ]) {
      const response = await hook('authenticate', attempt);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ result: 'deny' });
    }
    // Revoked: denied from then on.
    await server.app.inject({ method: 'POST', url: '/v1/devices/cam-1/revoke', headers: server.auth });
    expect((await hook('authenticate', { clientid: 'cam-1', username: 'cam-1', password: secret })).json()).toEqual({ result: 'deny' });
  });

  it("allows a device exactly its own topics, by the protocol's table", async () => {
    const verdict = async (username: string, action: 'publish' | 'subscribe', topic: string) =>
      (await hook('authorize', { clientid: username, username, action, topic })).json().result;
    expect(await verdict('cam-gone', 'publish', 'edgefleet/v1/devices/cam-gone/telemetry')).toBe('allow');
    expect(await verdict('cam-gone', 'subscribe', 'edgefleet/v1/devices/cam-gone/desired')).toBe('allow');
    expect(await verdict('cam-gone', 'publish', 'edgefleet/v1/devices/cam-9/telemetry')).toBe('deny');
    expect(await verdict('cam-gone', 'publish', 'edgefleet/v1/devices/cam-gone/desired')).toBe('deny');
    expect(await verdict('cam-gone', 'subscribe', 'edgefleet/v1/devices/+/desired')).toBe('deny');
    expect(await verdict('cam-gone', 'subscribe', '#')).toBe('deny');
    expect(await verdict('cam-gone', 'subscribe', '$share/g/edgefleet/v1/devices/+/telemetry')).toBe('deny');
    const spoofed = await hook('authorize', {
      clientid: 'cam-9',
      username: 'cam-gone',
      action: 'publish',
      topic: 'edgefleet/v1/devices/cam-gone/events',
    });
    expect(spoofed.json().result).toBe('deny');
    expect(await verdict(SERVER_USER.username, 'subscribe', '$share/edgefleet/edgefleet/v1/devices/+/telemetry')).toBe('allow');
  });

  it("refuses a device whose id is the server's broker user: it would take the server's path in the hooks", async () => {
    const taken = await server.app.inject({
      method: 'POST',
      url: '/v1/devices',
      headers: server.auth,
      payload: { id: SERVER_USER.username },
    });
    expect(taken.statusCode).toBe(400);
    expect(taken.json()).toMatchObject({ code: 'EF_DEVICE_ID_INVALID' });
    expect(taken.json().detail).toContain('EDGEFLEET_BROKER_USERNAME');
    const devices = await server.app.inject({ method: 'GET', url: `/v1/devices/${SERVER_USER.username}`, headers: server.auth });
    expect(devices.statusCode).toBe(404);
  });

  it('refuses a caller without the hook secret before reading its body', async () => {
    for (const authorization of ['', 'Bearer wrong', `Basic ${Buffer.from(`x:${SECRET}`).toString('base64')}`]) {
      // A body that would fail the schema: the answer is still 401, not 400.
      const response = await hook('authenticate', { nonsense: true }, authorization);
      expect(response.statusCode).toBe(401);
      expect(response.json().code).toBe('EF_UNAUTHORIZED');
    }
  });

  it('answers nothing when the hooks are off (the default)', async () => {
    const plain = await startTestServer();
    try {
      const response = await plain.app.inject({
        method: 'POST',
        url: '/v1/broker/authenticate',
        headers: { authorization: `Bearer ${SECRET}` },
        payload: { clientid: 'a', username: 'a', password: 'b' },
      });
      expect(response.statusCode).toBe(401);
      expect(response.json().detail).toMatch(/EDGEFLEET_BROKER_AUTH=http/);
    } finally {
      await plain.close();
    }
  });
});
