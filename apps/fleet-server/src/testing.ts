/** Starts a real server on loopback ports with a fresh data folder, for tests. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerConfig } from './config/index.ts';
import { createFleetServer, type FleetServer } from './server.ts';

export interface TestServer extends FleetServer {
  readonly token: string;
  readonly auth: { authorization: string };
}

export async function startTestServer(config: Partial<ServerConfig> = {}, options: { clock?: () => number } = {}): Promise<TestServer> {
  const dataDir = config.dataDir ?? (await mkdtemp(join(tmpdir(), 'edgefleet-server-')));
  const server = await createFleetServer({
    env: {},
    config: { port: 0, mqttPort: 0, rateLimitPerMinute: 100_000, ...config, dataDir },
    ...(options.clock ? { clock: options.clock } : {}),
    // Every answer a test sees is checked against the OpenAPI document.
    validateResponses: true,
  });
  const token = server.createdAdminToken ?? config.adminToken ?? '';
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
