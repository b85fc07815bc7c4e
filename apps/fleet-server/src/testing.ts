/** Starts a real server on loopback ports with a fresh data folder, for tests. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { ServerConfig } from './config/index.ts';
import { createFleetServer, type FleetServer } from './server.ts';

export interface TestServer extends FleetServer {
  readonly token: string;
  readonly auth: { authorization: string };
}

export async function startTestServer(config: Partial<ServerConfig> = {}, options: { clock?: () => number } = {}): Promise<TestServer> {
  const dataDir = config.dataDir ?? (await mkdtemp(join(tmpdir(), 'edgefleet-server-')));
  let created: string | undefined;
  // EDGEFLEET_TEST_SERVER_DATABASE=postgres: every test server on a database of its own in the tests' PostgreSQL.
  if (process.env.EDGEFLEET_TEST_SERVER_DATABASE === 'postgres' && config.databaseUrl === undefined) {
    const databaseUrl = await createTestPostgresDatabase('server');
    if (!databaseUrl) throw new Error('EDGEFLEET_TEST_SERVER_DATABASE=postgres needs PostgreSQL (EDGEFLEET_TEST_DATABASE_URL)');
    config = { ...config, databaseUrl };
    created = databaseUrl;
  }
  const server = await createFleetServer({
    env: {},
    config: { port: 0, mqttPort: 0, rateLimitPerMinute: 100_000, ...config, dataDir },
    ...(options.clock ? { clock: options.clock } : {}),
    // Every answer a test sees is checked against the OpenAPI document.
    validateResponses: true,
  });
  const token = server.createdAdminToken ?? config.adminToken ?? '';
  if (created) {
    // The database made for this server goes with it (a shared EDGEFLEET_TEST_DATABASE_URL must not fill up).
    const close = server.close.bind(server);
    const databaseUrl = created;
    server.close = async () => {
      await close();
      await dropTestPostgresDatabase(databaseUrl);
    };
  }
  return Object.assign(server, { token, auth: { authorization: `Bearer ${token}` } });
}

/** A multipart upload body: fields, then the model file, then the reference dataset if any (any order works). */
export function uploadForm(
  version: string,
  model: Uint8Array,
  fields: Record<string, unknown> = {},
  reference?: { readonly fileName: string; readonly text: string; readonly type?: string },
): FormData {
  const form = new FormData();
  form.append('version', version);
  for (const [name, value] of Object.entries(fields)) form.append(name, typeof value === 'string' ? value : JSON.stringify(value));
  form.append('model', new Blob([model.slice()]), 'model.onnx');
  if (reference) form.append('reference', new Blob([reference.text], { type: reference.type ?? '' }), reference.fileName);
  return form;
}

/**
 * A new, empty PostgreSQL database on the server EDGEFLEET_TEST_DATABASE_URL names (the tests' own
 * cluster: test/setup/postgres.ts); its URL. Undefined when there is no PostgreSQL to test on.
 */
export async function createTestPostgresDatabase(prefix = 'edgefleet'): Promise<string | undefined> {
  const admin = process.env.EDGEFLEET_TEST_DATABASE_URL;
  if (!admin) return undefined;
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`.replace(/[^a-z0-9_]/g, '_');
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`create database "${name}"`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops a database createTestPostgresDatabase made (connections still open to it are ended). */
export async function dropTestPostgresDatabase(databaseUrl: string): Promise<void> {
  const admin = process.env.EDGEFLEET_TEST_DATABASE_URL;
  if (!admin) return;
  const name = decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    // Without force first: connections a closed pool is still ending go away by themselves (ended
    // by force, they would raise errors nobody listens to). Forced only if some stay.
    const drop = `drop database if exists "${name.replaceAll('"', '""')}"`;
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query(drop);
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== '55006' || attempt >= 40) break; // 55006: still in use
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    await client.query(`${drop} with (force)`);
  } finally {
    await client.end();
  }
}
