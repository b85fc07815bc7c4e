/**
 * A web page that is a fleet member: it enrolls with an enrollment token, keeps its credential,
 * and runs the runtime + agent over MQTT-over-WebSocket. Bundled for the browser by the test.
 */
import { createAgent, createIndexedDbAgentState, createIndexedDbTelemetryQueue } from '@edgefleet/agent/browser';
import { createTrust, type KeySetPayload, type SignedDocument } from '@edgefleet/protocol';
import { createRuntime, type Runtime } from '@edgefleet/runtime/browser';

interface Credential {
  id: string;
  secret: string;
  keySet: SignedDocument<KeySetPayload>;
  mqtt: { ws: string };
}

export interface Member {
  readonly id: string;
  readonly runtime: Runtime;
  readonly connected: () => boolean;
  /** Closes the runtime's telemetry windows now; resolves once they are in the outbox. */
  readonly flushTelemetry: () => Promise<void>;
  /** The (bootId, seq) of each window waiting in the IndexedDB outbox. */
  readonly outbox: () => Promise<string[]>;
}

export async function startMember(options: { serverUrl: string; token: string; id: string }): Promise<Member> {
  let credential = JSON.parse(localStorage.getItem('edgefleet-credential') ?? 'null') as Credential | null;
  if (!credential) {
    const response = await fetch(`${options.serverUrl}/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: options.token, id: options.id }),
    });
    if (!response.ok) throw new Error(`enrollment failed: ${response.status} ${await response.text()}`);
    credential = (await response.json()) as Credential;
    localStorage.setItem('edgefleet-credential', JSON.stringify(credential));
  }
  const keySet = credential.keySet.payload;
  const runtime = await createRuntime({ trust: keySet, deviceId: credential.id, webgpu: false });
  const telemetry = createIndexedDbTelemetryQueue();
  const agent = createAgent({
    deviceId: credential.id,
    secret: credential.secret,
    mqttUrl: credential.mqtt.ws,
    serverUrl: options.serverUrl,
    runtime,
    trust: createTrust(keySet),
    state: createIndexedDbAgentState(),
    telemetry,
    platform: 'browser',
    reconnectPeriodMs: 500,
  });
  // Not awaited: the page serves its models offline whether or not the fleet answers.
  void agent.start().catch(() => undefined);
  return {
    id: credential.id,
    runtime,
    connected: () => agent.connected,
    flushTelemetry: async () => {
      runtime.flushTelemetry();
      await agent.idle();
    },
    outbox: async () => (await telemetry.list()).map((q) => `${q.window.bootId}/${q.window.seq}`),
  };
}
