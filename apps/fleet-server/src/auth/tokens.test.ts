/**
 * The lifecycle of every credential (issue 14): admin tokens named, expiring, listed without their
 * secret, revoked at once; enrollment tokens listed and revoked; the audit log names the token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing.ts';

let now = Date.parse('2026-11-29T08:00:00Z');
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({}, { clock: () => now });
});
afterAll(async () => {
  await server.close();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
async function call(method: 'GET' | 'POST', url: string, headers = server.auth, payload?: unknown) {
  return server.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });
}

describe('admin tokens', () => {
  it('creates a named, expiring token whose secret is shown once and never listed', async () => {
    const created = await call('POST', '/v1/admin-tokens', server.auth, { name: 'ci-pipeline', scope: 'admin', expiresInSeconds: 3600 });
    expect(created.statusCode).toBe(201);
    const body = created.json();
    expect(created.headers.location).toBe(`/v1/admin-tokens/${body.id}`);
    expect(body).toMatchObject({ name: 'ci-pipeline', scope: 'admin', state: 'active', expiresAt: '2026-11-29T09:00:00.000Z' });
    expect(body.token).toMatch(/^efa_/);

    // efa_<id>_<secret>: the secret is base64url and may itself hold "_" (split would keep a fragment of it, even one letter).
    const secret = body.token.slice(`efa_${body.id}_`.length) as string;
    expect(secret.length).toBeGreaterThan(20);
    const list = await call('GET', '/v1/admin-tokens?limit=1000');
    expect(list.body).not.toContain(secret);
    expect(list.json().tokens).toEqual(expect.arrayContaining([expect.objectContaining({ id: body.id, name: 'ci-pipeline' })]));
    expect((await call('GET', created.headers.location as string)).json()).not.toHaveProperty('token');

    const whoami = await call('GET', '/v1/whoami', bearer(body.token));
    expect(whoami.json()).toEqual({ id: body.id, name: 'ci-pipeline', scope: 'admin', expiresAt: '2026-11-29T09:00:00.000Z' });
  });

  it('stops an expired token at its expiry, and lists it as expired', async () => {
    const created = (await call('POST', '/v1/admin-tokens', server.auth, { name: 'short', scope: 'read', expiresInSeconds: 60 })).json();
    expect((await call('GET', '/v1/models', bearer(created.token))).statusCode).toBe(200);
    now += 61_000;
    const refused = await call('GET', '/v1/models', bearer(created.token));
    expect(refused.json()).toMatchObject({ status: 401, code: 'EF_UNAUTHORIZED' });
    const expired = (await call('GET', '/v1/admin-tokens?state=expired')).json().tokens.map((t: { id: string }) => t.id);
    expect(expired).toContain(created.id);
    const active = (await call('GET', '/v1/admin-tokens?state=active&limit=1000')).json().tokens.map((t: { id: string }) => t.id);
    expect(active).not.toContain(created.id);
  });

  it('shuts a leaked token off at once; a second revoke changes nothing and is audited once', async () => {
    const leaked = (await call('POST', '/v1/admin-tokens', server.auth, { name: 'leaked-laptop', scope: 'admin' })).json();
    expect((await call('GET', '/v1/devices', bearer(leaked.token))).statusCode).toBe(200);
    const revoked = await call('POST', `/v1/admin-tokens/${leaked.id}/revoke`);
    expect(revoked.json()).toMatchObject({ id: leaked.id, state: 'revoked' });
    expect((await call('GET', '/v1/devices', bearer(leaked.token))).json()).toMatchObject({ status: 401, code: 'EF_UNAUTHORIZED' });
    // A token can revoke itself; a revoked one cannot act, not even to revoke.
    expect((await call('POST', `/v1/admin-tokens/${leaked.id}/revoke`, bearer(leaked.token))).statusCode).toBe(401);
    expect((await call('POST', `/v1/admin-tokens/${leaked.id}/revoke`)).json()).toMatchObject({ state: 'revoked' });
    const entries = (await call('GET', `/v1/audit?target=admin-token:${leaked.id}`)).json().entries;
    expect(entries.map((e: { action: string }) => e.action)).toEqual(['admin-token.revoke', 'admin-token.create']);
    expect(entries[0]).toMatchObject({ actorName: 'first admin', after: { name: 'leaked-laptop', state: 'revoked' } });
  });

  it('names the acting token in the audit log, even after it is revoked', async () => {
    const ci = (await call('POST', '/v1/admin-tokens', server.auth, { name: 'ci-deployer', scope: 'admin' })).json();
    const device = await call('POST', '/v1/devices', bearer(ci.token), { id: 'audited-1', tags: ['a'] });
    expect(device.statusCode).toBe(201);
    await call('POST', `/v1/admin-tokens/${ci.id}/revoke`);
    const [entry] = (await call('GET', '/v1/audit?target=device:audited-1')).json().entries;
    expect(entry).toMatchObject({ actor: ci.id, actorName: 'ci-deployer', action: 'device.create' });
    const byActor = (await call('GET', `/v1/audit?actor=${ci.id}`)).json().entries;
    expect(byActor.map((e: { target: string }) => e.target)).toEqual(['device:audited-1']);
  });

  it('refuses to revoke the last working admin token, which would lock every admin out', async () => {
    const lone = await startTestServer();
    try {
      const [first] = (await lone.app.inject({ method: 'GET', url: '/v1/admin-tokens', headers: lone.auth })).json().tokens;
      const refused = await lone.app.inject({ method: 'POST', url: `/v1/admin-tokens/${first.id}/revoke`, headers: lone.auth });
      expect(refused.json()).toMatchObject({ status: 409, code: 'EF_LAST_ADMIN_TOKEN' });
      expect((await lone.app.inject({ method: 'GET', url: '/v1/devices', headers: lone.auth })).statusCode).toBe(200);
      // With a second admin token, the first can go.
      await lone.app.inject({ method: 'POST', url: '/v1/admin-tokens', headers: lone.auth, payload: { name: 'second', scope: 'admin' } });
      expect((await lone.app.inject({ method: 'POST', url: `/v1/admin-tokens/${first.id}/revoke`, headers: lone.auth })).statusCode).toBe(
        200,
      );
    } finally {
      await lone.close();
    }
  });

  it('keeps token management to admin tokens, and lists page without repeats', async () => {
    const reader = (await call('POST', '/v1/admin-tokens', server.auth, { name: 'reader', scope: 'read' })).json();
    expect((await call('GET', '/v1/admin-tokens', bearer(reader.token))).json()).toMatchObject({ status: 403, code: 'EF_FORBIDDEN' });
    expect((await call('POST', `/v1/admin-tokens/${reader.id}/revoke`, bearer(reader.token))).statusCode).toBe(403);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { tokens: { id: string }[]; next: string | null } = (
        await call('GET', `/v1/admin-tokens?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      ).json();
      seen.push(...page.tokens.map((t: { id: string }) => t.id));
      cursor = page.next;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBe((await call('GET', '/v1/admin-tokens?limit=1000')).json().tokens.length);
    expect((await call('POST', '/v1/admin-tokens/nope/revoke')).json()).toMatchObject({ status: 404, code: 'EF_NOT_FOUND' });
  });
});

describe('enrollment tokens', () => {
  it('lists them by state without their secret, and a revoked one enrolls nothing', async () => {
    const created = await call('POST', '/v1/enrollment-tokens', server.auth, { name: 'line-3', tags: ['site=lyon'], uses: 5 });
    expect(created.statusCode).toBe(201);
    const token = created.json();
    expect(created.headers.location).toBe(`/v1/enrollment-tokens/${token.id}`);
    const enrolled = await call('POST', '/v1/enroll', {} as never, { token: token.token, id: 'enrolled-1' });
    expect(enrolled.statusCode).toBe(201);
    const [audit] = (await call('GET', '/v1/audit?target=device:enrolled-1')).json().entries;
    expect(audit).toMatchObject({ actor: `enrollment-token:${token.id}`, actorName: 'line-3' });

    const listed = await call('GET', '/v1/enrollment-tokens?state=active');
    expect(listed.body).not.toContain(token.token.split('_').at(-1));
    expect(listed.json().tokens).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: token.id, name: 'line-3', usesLeft: 4, tags: ['site=lyon'] })]),
    );

    const revoked = await call('POST', `/v1/enrollment-tokens/${token.id}/revoke`);
    expect(revoked.json()).toMatchObject({ state: 'revoked' });
    const refused = await call('POST', '/v1/enroll', {} as never, { token: token.token, id: 'enrolled-2' });
    expect(refused.json()).toMatchObject({ status: 401, code: 'EF_ENROLLMENT_TOKEN_INVALID' });
    expect((await call('GET', '/v1/devices/enrolled-2')).statusCode).toBe(404);
    // The device it enrolled before stays.
    expect((await call('GET', '/v1/devices/enrolled-1')).json()).toMatchObject({ status: 'active' });
    expect((await call('GET', '/v1/enrollment-tokens?state=revoked')).json().tokens.map((t: { id: string }) => t.id)).toContain(token.id);
    expect((await call('POST', `/v1/enrollment-tokens/${token.id}/revoke`)).json()).toMatchObject({ state: 'revoked' });
    const revokes = (await call('GET', `/v1/audit?target=enrollment-token:${token.id}&action=enrollment-token.revoke`)).json().entries;
    expect(revokes).toHaveLength(1);
  });

  it('lists a token with no uses left as used-up', async () => {
    const token = (await call('POST', '/v1/enrollment-tokens', server.auth, { uses: 1 })).json();
    await call('POST', '/v1/enroll', {} as never, { token: token.token });
    expect((await call('GET', `/v1/enrollment-tokens/${token.id}`)).json()).toMatchObject({ state: 'used-up', usesLeft: 0 });
    expect((await call('GET', '/v1/enrollment-tokens?state=used-up')).json().tokens.map((t: { id: string }) => t.id)).toContain(token.id);
  });
});

describe('the first admin token', () => {
  // Replicas share a PostgreSQL database; started at once on an empty one, each used to find no
  // token and create its own (two "first" tokens, two files). Only one may.
  it.runIf(process.env.EDGEFLEET_TEST_SERVER_DATABASE === 'postgres')(
    'is created once when several servers start at once on an empty database',
    async () => {
      const { createTestPostgresDatabase, dropTestPostgresDatabase } = await import('../testing.ts');
      const { openDatabase } = await import('../store/db.ts');
      const { ensureFirstAdminToken } = await import('./tokens.ts');
      const url = (await createTestPostgresDatabase('firsttoken')) as string;
      const opened = await Promise.all(Array.from({ length: 4 }, () => openDatabase({ dataDir: '/nonexistent', databaseUrl: url })));
      try {
        const created = await Promise.all(
          opened.flatMap((o) => [ensureFirstAdminToken(o.db, undefined, 'postgres'), ensureFirstAdminToken(o.db, undefined, 'postgres')]),
        );
        expect(created.filter((token) => token !== undefined)).toHaveLength(1);
        const rows = await opened[0]?.db.selectFrom('admin_tokens').select('id').execute();
        expect(rows).toHaveLength(1);
        // The witness that later starts had their chance and found it: none creates another.
        expect(await ensureFirstAdminToken(opened[1]?.db as never, undefined, 'postgres')).toBeUndefined();
      } finally {
        for (const o of opened) await o.close();
        await dropTestPostgresDatabase(url);
      }
    },
  );
});
