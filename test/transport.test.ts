/**
 * The agent's mqtt.js transport against the fleet server's real broker (embedded aedes, device
 * credentials, topic ACL, packet guard), over MQTT/TCP and MQTT over WebSocket: the Transport
 * contract of @edgefleet/test-utils.
 */
import { createMqttTransport } from '@edgefleet/agent';
import { createTopicScheme, encodeMessage, timestamp } from '@edgefleet/protocol';
import { type BrokerDevice, describeTransportContract, type TransportHarness } from '@edgefleet/test-utils/contracts';
import { afterAll, beforeAll } from 'vitest';
import { type Fleet, startFleet } from './helpers/fleet.ts';

const topics = createTopicScheme();
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
let fleet: Fleet;
const received = new Map<string, string[]>();
let devices = 0;

beforeAll(async () => {
  fleet = await startFleet();
  fleet.server.broker.onDeviceMessage((address, payload) => {
    const topic = topics.build(address.kind, address.deviceId);
    received.set(topic, [...(received.get(topic) ?? []), text(payload)]);
  });
}, 60_000);

afterAll(async () => {
  await fleet?.close();
});

async function device(): Promise<BrokerDevice> {
  const id = `transport-${devices++}`;
  const { secret } = await fleet.api<{ secret: string }>('POST', '/v1/devices', { id });
  const bootId = '00000000-0000-4000-8000-000000000000';
  return {
    id,
    secret,
    publishTopic: topics.build('events', id),
    subscribeTopic: topics.build('desired', id),
    forbiddenTopic: topics.build('desired', `${id}-other`),
    willTopic: topics.build('presence', id),
    message: (n) =>
      text(encodeMessage('events', { type: 'edgefleet.event/v1', deviceId: id, bootId, seq: n, at: timestamp(0), kind: 'verified' })),
    will: () =>
      text(encodeMessage('presence', { type: 'edgefleet.presence/v1', deviceId: id, bootId, state: 'offline', since: timestamp(0) })),
  };
}

function harness(link: 'tcp' | 'ws'): () => Promise<TransportHarness> {
  return async () => ({
    url: fleet.server.broker.urls[link],
    createTransport: (options) => createMqttTransport(options),
    device,
    revoke: async (id) => {
      await fleet.api('POST', `/v1/devices/${id}/revoke`, {});
    },
    received: (topic) => received.get(topic) ?? [],
    send: (topic, payload, retain) => fleet.server.broker.publish(topic, payload, { retain, qos: 1 }),
    drop: (id) => fleet.server.broker.disconnect(id),
  });
}

describeTransportContract('mqtt.js over TCP, fleet-server broker', harness('tcp'));
describeTransportContract('mqtt.js over WebSocket, fleet-server broker', harness('ws'));
