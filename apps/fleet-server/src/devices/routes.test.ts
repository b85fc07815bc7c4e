import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const post = (url: string, payload: unknown, headers: Record<string, string> = server.auth) =>
  server.app.inject({ method: 'POST', url, headers, payload: payload as object });

describe('devices and enrollment', () => {
  it('creates a device with tags and shows its secret once, stored only hashed', async () => {
    const created = await post('/v1/devices', { id: 'cam-001', tags: ['site=lyon', 'line-2'] });
    expect(created.statusCode).toBe(201);
    const body = created.json();
    expect(body).toMatchObject({
      id: 'cam-001',
      tags: ['site=lyon', 'line-2'],
      mqtt: { tcp: expect.stringMatching(/^mqtt:\/\//), ws: expect.stringMatching(/\/mqtt$/) },
    });
    expect(body.secret).toMatch(/^[\w-]{43}$/);
    expect(body.keySet.payload.type).toBe('edgefleet.keyset/v1');
    const view = (await server.app.inject({ method: 'GET', url: '/v1/devices/cam-001', headers: server.auth })).body;
    expect(view).not.toContain(body.secret);
    const row = await server.app.inject({ method: 'GET', url: '/v1/devices?tag=site=lyon', headers: server.auth });
    expect(row.json().devices.map((d: { id: string }) => d.id)).toEqual(['cam-001']);
    expect((await post('/v1/devices', { id: 'cam-001' })).json()).toMatchObject({ code: 'EF_DEVICE_EXISTS', status: 409 });
  });

  it('finds devices by the start of their id, exactly (case and LIKE wildcards count as themselves)', async () => {
    for (const id of ['Pre_1', 'pre_2', 'preX3', 'prefix.4']) expect((await post('/v1/devices', { id })).statusCode).toBe(201);
    const ids = async (prefix: string) =>
      (await server.app.inject({ method: 'GET', url: `/v1/devices?idPrefix=${encodeURIComponent(prefix)}`, headers: server.auth }))
        .json()
        .devices.map((d: { id: string }) => d.id);
    expect(await ids('pre')).toEqual(['preX3', 'pre_2', 'prefix.4']);
    expect(await ids('pre_')).toEqual(['pre_2']);
    expect(await ids('Pre')).toEqual(['Pre_1']);
    const bad = await server.app.inject({ method: 'GET', url: '/v1/devices?idPrefix=a%25', headers: server.auth });
    expect(bad.json()).toMatchObject({ status: 400, code: 'EF_SCHEMA_INVALID' });
  });

  it('enrolls devices with a reusable token until its uses run out, giving them its tags', async () => {
    const token = (await post('/v1/enrollment-tokens', { tags: ['fleet=demo'], uses: 2 })).json().token as string;
    const first = await post('/v1/enroll', { token, id: 'field-1' }, {});
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ id: 'field-1', tags: ['fleet=demo'] });
    expect((await post('/v1/enroll', { token }, {})).statusCode).toBe(201);
    const third = await post('/v1/enroll', { token }, {});
    expect(third.json()).toMatchObject({ code: 'EF_ENROLLMENT_TOKEN_INVALID', status: 401 });
    expect((await post('/v1/enroll', { token: 'efe_forged_token' }, {})).json().code).toBe('EF_ENROLLMENT_TOKEN_INVALID');
  });

  it('never lets a token with N uses enroll more than N devices, however many enroll at once', async () => {
    const token = (await post('/v1/enrollment-tokens', { tags: ['fleet=burst'], uses: 5 })).json().token as string;
    // 30 devices at once (on PostgreSQL, concurrent transactions: the fleet-server-postgres run).
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => post('/v1/enroll', { token, id: `burst-${i}` }, {})));
    expect(answers.filter((a) => a.statusCode === 201)).toHaveLength(5);
    expect(answers.filter((a) => a.statusCode !== 201).every((a) => a.json().code === 'EF_ENROLLMENT_TOKEN_INVALID')).toBe(true);
    const listed = (await server.app.inject({ method: 'GET', url: '/v1/devices?idPrefix=burst-', headers: server.auth })).json();
    expect(listed.devices).toHaveLength(5);
  });

  it('refuses an invalid device id and answers unknown devices with EF_DEVICE_UNKNOWN', async () => {
    expect((await post('/v1/devices', { id: 'a/b' })).json().code).toBe('EF_SCHEMA_INVALID');
    expect((await post('/v1/devices', { id: 'constructor' })).json().code).toBe('EF_DEVICE_ID_INVALID');
    expect((await server.app.inject({ method: 'GET', url: '/v1/devices/ghost', headers: server.auth })).json()).toMatchObject({
      code: 'EF_DEVICE_UNKNOWN',
      status: 404,
    });
  });

  it('audits creation, revocation and deletion with before and after', async () => {
    await post('/v1/devices', { id: 'audited', tags: ['x'] });
    await post('/v1/devices/audited/revoke', {});
    expect((await server.app.inject({ method: 'DELETE', url: '/v1/devices/audited', headers: server.auth })).statusCode).toBe(204);
    const entries = (await server.app.inject({ method: 'GET', url: '/v1/audit?target=device:audited', headers: server.auth })).json()
      .entries;
    expect(entries.map((e: { action: string }) => e.action)).toEqual(['device.delete', 'device.revoke', 'device.create']);
    expect(entries[1]).toMatchObject({
      before: { status: 'active' },
      after: { status: 'revoked' },
      actor: expect.any(String),
      at: expect.any(String),
    });
  });
});
