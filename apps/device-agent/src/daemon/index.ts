/**
 * The device daemon: runtime + agent from one data folder. On first start it enrolls with an
 * enrollment token and keeps the credential (mode 0600); afterwards it needs no token.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAgent, createFileAgentState } from '@edgefleet/agent';
import { createTrust, type KeySetPayload, type SignedDocument } from '@edgefleet/protocol';
import { nodeVerify, writeFileAtomically } from '@edgefleet/protocol/node';
import { createRuntime } from '@edgefleet/runtime';

export interface Credential {
  readonly id: string;
  readonly secret: string;
  readonly mqtt: { readonly tcp: string; readonly ws: string };
  readonly keySet: SignedDocument<KeySetPayload>;
}

export interface DaemonOptions {
  readonly serverUrl: string;
  readonly dataDir: string;
  readonly token?: string;
  readonly id?: string;
  readonly mqttUrl?: string;
  readonly log: (line: Record<string, unknown>) => void;
}

export async function loadOrEnroll(options: Pick<DaemonOptions, 'serverUrl' | 'dataDir' | 'token' | 'id'>): Promise<Credential> {
  const path = join(options.dataDir, 'credential.json');
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Credential;
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
  }
  if (!options.token) throw new Error(`no credential in ${path}: pass --token <enrollment token> to enroll this device`);
  const response = await fetch(`${options.serverUrl}/v1/enroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: options.token, ...(options.id ? { id: options.id } : {}) }),
  });
  const body = (await response.json()) as Credential & { code?: string; detail?: string };
  if (!response.ok) throw new Error(`enrollment refused: ${response.status} ${body.code}: ${body.detail}`);
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const credential: Credential = { id: body.id, secret: body.secret, mqtt: body.mqtt, keySet: body.keySet };
  await writeFileAtomically(path, JSON.stringify(credential, null, 2)); // mode 0600
  return credential;
}

export async function runDaemon(options: DaemonOptions): Promise<{ stop(): Promise<void> }> {
  const credential = await loadOrEnroll(options);
  const log = options.log;
  log({ level: 'info', msg: 'device ready', deviceId: credential.id, mqtt: options.mqttUrl ?? credential.mqtt.tcp });
  const runtime = await createRuntime({
    dir: join(options.dataDir, 'models'),
    trust: credential.keySet.payload,
    deviceId: credential.id,
    listeners: {
      restored: ({ model, executionProvider }) =>
        log({ level: 'info', msg: 'model restored', deviceId: credential.id, model: `${model.name}@${model.version}`, executionProvider }),
    },
  });
  runtime.on('activated', ({ model, executionProvider }) =>
    log({ level: 'info', msg: 'model activated', deviceId: credential.id, model: `${model.name}@${model.version}`, executionProvider }),
  );
  runtime.on('install-failed', ({ model, error }) =>
    log({ level: 'warn', msg: 'install failed', deviceId: credential.id, model: `${model.name}@${model.version}`, code: error.code }),
  );
  const agent = createAgent({
    deviceId: credential.id,
    secret: credential.secret,
    mqttUrl: options.mqttUrl ?? credential.mqtt.tcp,
    serverUrl: options.serverUrl,
    runtime,
    trust: createTrust(credential.keySet.payload, { verify: nodeVerify }),
    state: createFileAgentState(options.dataDir),
    platform: 'node',
    log: (level, msg, fields) => log({ level, msg, deviceId: credential.id, ...fields }),
  });
  await agent.start();
  log({ level: 'info', msg: 'connected', deviceId: credential.id });
  return {
    async stop() {
      await agent.stop();
      await runtime.close();
    },
  };
}
