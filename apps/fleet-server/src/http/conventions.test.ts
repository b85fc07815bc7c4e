/**
 * HTTP conventions a client (fleetctl, a script, a proxy) relies on: 415 for a body type a route
 * does not take, 201 with the created resource's Location, and a problem's `instance` that is a
 * URI naming the occurrence (the request id the server's log line carries).
 */
import { mlpModel } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

describe('HTTP conventions', () => {
  it('answers 415 EF_UNSUPPORTED_MEDIA_TYPE for a body of a type the route does not take', async () => {
    for (const [url, type, payload] of [
      ['/v1/devices', 'text/plain', 'id=x'],
      ['/v1/devices', 'application/x-www-form-urlencoded', 'id=x'],
      ['/v1/models/m/versions', 'application/json', '{"version":"1.0.0"}'],
    ] as const) {
      const response = await server.app.inject({ method: 'POST', url, headers: { ...server.auth, 'content-type': type }, payload });
      expect(response.statusCode, `${url} ${type}`).toBe(415);
      expect(response.json()).toMatchObject({ code: 'EF_UNSUPPORTED_MEDIA_TYPE', status: 415 });
    }
  });

  it('answers 201 with the Location of what it created, and that location answers', async () => {
    const device = await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id: 'located-1' } });
    expect(device.statusCode).toBe(201);
    expect(device.headers.location).toBe('/v1/devices/located-1');
    const upload = await server.app.inject({
      method: 'POST',
      url: '/v1/models/located/versions',
      headers: server.auth,
      payload: uploadForm('1.0.0', mlpModel(7).bytes),
    });
    expect(upload.statusCode).toBe(201);
    expect(upload.headers.location).toBe('/v1/models/located/versions/1.0.0');
    for (const location of [device.headers.location, upload.headers.location]) {
      const followed = await server.app.inject({ method: 'GET', url: String(location), headers: server.auth });
      expect(followed.statusCode, String(location)).toBe(200);
    }
  });

  it("gives each problem an instance URI: the request's id, as the log line has it", async () => {
    const response = await server.app.inject({ method: 'GET', url: '/v1/devices/nobody-here', headers: server.auth });
    expect(response.statusCode).toBe(404);
    const instance = response.json().instance as string;
    expect(instance).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(() => new URL(instance)).not.toThrow();
  });
});
