/**
 * The fleet server in a child process (so a test can kill -9 it, or a benchmark can measure it
 * apart), on fixed loopback ports, with an HTTP client for its admin API.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const main = fileURLToPath(new URL('../../apps/fleet-server/src/cli/main.ts', import.meta.url));

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface ChildServerOptions {
  readonly dataDir: string;
  readonly port: number;
  readonly mqttPort: number;
  readonly adminToken: string;
  readonly logLevel?: string;
  readonly nodeArgs?: readonly string[];
  /** More environment (EDGEFLEET_DATABASE_URL, EDGEFLEET_BROKER_URL…). */
  readonly env?: Readonly<Record<string, string>>;
}

/** Starts `edgefleet-server` and resolves once it prints its admin API address. */
export async function startChildServer(options: ChildServerOptions): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--conditions=@edgefleet/source', '--import', 'tsx', main], {
    cwd: root,
    env: {
      ...process.env,
      EDGEFLEET_DATA_DIR: options.dataDir,
      EDGEFLEET_PORT: String(options.port),
      EDGEFLEET_MQTT_PORT: String(options.mqttPort),
      EDGEFLEET_ADMIN_TOKEN: options.adminToken,
      EDGEFLEET_LOG_LEVEL: options.logLevel ?? 'warn',
      EDGEFLEET_RATE_LIMIT: '1000000',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${output}`)), 30_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (process.env.BENCH_TRACE) process.stderr.write(chunk);
      if (output.includes('admin API')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (process.env.BENCH_TRACE) process.stderr.write(chunk);
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${output}`)));
  });
  return child;
}

/** A JSON client for the admin API: bearer token, problem+json errors thrown with their body. */
export function adminApi(url: string, token: string) {
  // biome-ignore lint/suspicious/noExplicitAny: callers read JSON bodies ad hoc
  return async (method: string, path: string, body?: unknown): Promise<any> => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body instanceof FormData || body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: body instanceof FormData ? body : JSON.stringify(body) }),
    });
    const json = await response.json();
    if (!response.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
    return json;
  };
}

/** Every item of a paged list: follows `next` from the first page (1,000 a page). */
export async function listAll<T>(api: ReturnType<typeof adminApi>, path: string, key: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const separator = path.includes('?') ? '&' : '?';
    const page = await api('GET', `${path}${separator}limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    items.push(...(page[key] as T[]));
    cursor = page.next;
  } while (cursor);
  return items;
}
