/**
 * A real fleet for end-to-end tests: the fleet server on loopback ports with a fresh data folder,
 * and devices running the real runtime + agent over real MQTT.
 */

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Agent,
  type AgentOptions,
  createAgent,
  createFileAgentState,
  createFileTelemetryQueue,
  type TelemetryQueueStore,
} from '@edgefleet/agent';
import { createFleetServer, type FleetServer, type ServerConfig } from '@edgefleet/fleet-server';
import { createTrust, type KeySetPayload, type SignedDocument } from '@edgefleet/protocol';
import { nodeVerify } from '@edgefleet/protocol/node';
import { createRuntime, createWasmEngine, type Runtime } from '@edgefleet/runtime';
import { until } from '@edgefleet/test-utils';

export interface Fleet {
  readonly server: FleetServer;
  readonly keySet: KeySetPayload;
  // biome-ignore lint/suspicious/noExplicitAny: tests read JSON bodies ad hoc
  api<T = any>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown): Promise<T>;
  register(name: string, version: string, bytes: Uint8Array, fields?: Record<string, unknown>): Promise<unknown>;
  startDevice(
    id: string,
    options?: {
      existing?: { secret: string; dir: string };
      tags?: string[];
      telemetryWindowMs?: number;
      /** Profile the features of every run (0) rather than a time sample; see the runtime's telemetry options. */
      profileEveryMs?: number;
      telemetryResendMs?: number;
      /** The device's clock (runtime and agent), for compressed time. */
      now?: () => number;
      /** The runtime's variant choice (a size budget). */
      variants?: { maxBytes?: number };
      /** The outbox, when a test wraps the file one (to inject faults). */
      telemetryQueue?: (dir: string) => TelemetryQueueStore;
      /** What the agent logs. */
      log?: AgentOptions['log'];
      /** The agent's first reconnect delay; default 200 ms. */
      reconnectPeriodMs?: number;
      /** The MQTT transport, when a test wraps the real one (to inject faults). */
      transport?: AgentOptions['transport'];
    },
  ): Promise<FleetDevice>;
  /** Stops the server (not the devices) and starts a new one on the same data folder and ports. */
  restartServer(): Promise<void>;
  /** The two halves of a restart, for a server that stays down a while. */
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
  close(): Promise<void>;
}

export interface FleetDevice {
  readonly id: string;
  readonly secret: string;
  readonly dir: string;
  readonly runtime: Runtime;
  readonly agent: Agent;
  /** How many artifact downloads made progress on this device since it started. */
  downloads(): number;
  activeVersion(model: string): string | undefined;
  stop(): Promise<void>;
}

/** The admin token of test fleets (32 characters or more: the server refuses shorter ones). */
export const ADMIN_TOKEN = 'e2e-admin-token-0123456789abcdefghij';

export { until };

/** Creates a rollout and waits for it to complete (a setup step: any other end fails the test). */
export async function rollOutAndWait(fleet: Fleet, spec: Record<string, unknown>, timeoutMs = 30_000): Promise<string> {
  const { id } = await fleet.api<{ id: string }>('POST', '/v1/rollouts', spec);
  await until(async () => (await fleet.api('GET', `/v1/rollouts/${id}`)).state === 'completed', `rollout ${id} to complete`, timeoutMs);
  return id;
}

export async function startFleet(config: Partial<ServerConfig> = {}): Promise<Fleet> {
  const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-fleet-'));
  let server = await createFleetServer({
    env: {},
    config: { ...config, dataDir, port: 0, mqttPort: 0, adminToken: ADMIN_TOKEN },
    validateResponses: true,
  });
  const ports = { http: new URL(server.url).port, mqtt: new URL(server.broker.urls.tcp).port };
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const keySet = ((await server.app.inject({ method: 'GET', url: '/v1/keyset' })).json() as SignedDocument<KeySetPayload>).payload;
  const devices: FleetDevice[] = [];

  const fleet: Fleet = {
    get server() {
      return server;
    },
    keySet,
    async api(method, url, payload) {
      const response = await server.app.inject({
        method,
        url,
        headers: auth,
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
      if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
      return (response.statusCode === 204 ? undefined : response.json()) as never;
    },
    async register(name, version, bytes, fields = {}) {
      const form = new FormData();
      form.append('version', version);
      for (const [key, value] of Object.entries(fields)) form.append(key, typeof value === 'string' ? value : JSON.stringify(value));
      form.append('model', new Blob([bytes.slice()]), 'model.onnx');
      const response = await server.app.inject({ method: 'POST', url: `/v1/models/${name}/versions`, headers: auth, payload: form });
      if (response.statusCode !== 201) throw new Error(response.body);
      return response.json();
    },
    async startDevice(id, options = {}) {
      const credentials: { secret: string; dir: string } = options.existing ?? {
        secret: (await fleet.api<{ secret: string }>('POST', '/v1/devices', { id, tags: options.tags ?? ['fleet=test'] })).secret,
        dir: await mkdtemp(join(tmpdir(), `edgefleet-agent-${id}-`)),
      };
      let downloads = 0;
      const runtime = await createRuntime({
        dir: credentials.dir,
        engines: [createWasmEngine(1)],
        trust: keySet,
        deviceId: id,
        telemetry: {
          ...(options.telemetryWindowMs !== undefined ? { windowMs: options.telemetryWindowMs } : {}),
          ...(options.profileEveryMs !== undefined ? { profileEveryMs: options.profileEveryMs } : {}),
        },
        ...(options.now ? { now: options.now } : {}),
        ...(options.variants ? { variants: options.variants } : {}),
      });
      runtime.on('download-progress', ({ bytes }) => {
        if (bytes > 0) downloads++;
      });
      const agent = createAgent({
        deviceId: id,
        secret: credentials.secret,
        mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`,
        serverUrl: `http://127.0.0.1:${ports.http}`,
        runtime,
        trust: createTrust(keySet, { verify: nodeVerify }),
        state: createFileAgentState(credentials.dir),
        telemetry: (options.telemetryQueue ?? createFileTelemetryQueue)(credentials.dir),
        platform: 'node',
        reconnectPeriodMs: options.reconnectPeriodMs ?? 200,
        ...(options.telemetryResendMs ? { telemetryResendMs: options.telemetryResendMs } : {}),
        ...(options.now ? { now: options.now } : {}),
        ...(options.log ? { log: options.log } : {}),
        ...(options.transport ? { transport: options.transport } : {}),
      });
      await agent.start();
      const device: FleetDevice = {
        id,
        secret: credentials.secret,
        dir: credentials.dir,
        runtime,
        agent,
        downloads: () => downloads,
        activeVersion: (model) => runtime.models().find((m) => m.name === model)?.active?.version,
        async stop() {
          await agent.stop();
          await runtime.close();
          devices.splice(devices.indexOf(device), 1);
        },
      };
      devices.push(device);
      return device;
    },
    async restartServer() {
      await fleet.stopServer();
      await fleet.startServer();
    },
    async stopServer() {
      await server.close();
    },
    async startServer() {
      server = await createFleetServer({
        env: {},
        config: { ...config, dataDir, port: Number(ports.http), mqttPort: Number(ports.mqtt), adminToken: ADMIN_TOKEN },
        validateResponses: true,
      });
    },
    async close() {
      for (const device of [...devices]) await device.stop();
      await server.close();
    },
  };
  return fleet;
}
