/**
 * Stopping the broker while devices are connected and reconnecting: new connections are refused
 * from the first moment (never handed to a broker that is closing: "mqemitter is closed"), the
 * devices' wills are handled, and nothing above info is logged.
 */

import { mkdtemp } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTopicScheme, encodeMessageText } from '@edgefleet/protocol';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { createFleetServer } from '../server.ts';
import { BrokerStoppingError } from './index.ts';

const TOKEN = 'broker-shutdown-admin-token-0123456789ab';
const topics = createTopicScheme();

describe('broker shutdown', () => {
  it('refuses connections as soon as it starts closing, and logs nothing above info', async () => {
    const lines: { level: number; msg: string }[] = [];
    const server = await createFleetServer({
      env: {},
      config: { dataDir: await mkdtemp(join(tmpdir(), 'ef-broker-shutdown-')), port: 0, mqttPort: 0, adminToken: TOKEN },
      logger: { level: 'info', stream: { write: (line) => lines.push(JSON.parse(line)) } },
    });
    const auth = { authorization: `Bearer ${TOKEN}` };
    const clients: mqtt.MqttClient[] = [];
    for (const id of ['dev-1', 'dev-2', 'dev-3']) {
      const { secret } = (await server.app.inject({ method: 'POST', url: '/v1/devices', headers: auth, payload: { id } })).json();
      const offline = {
        type: 'edgefleet.presence/v1',
        deviceId: id,
        bootId: `boot-${id}-0001`,
        state: 'offline',
        since: new Date().toISOString(),
      };
      const client = await mqtt.connectAsync(server.broker.urls.tcp, {
        clientId: id,
        username: id,
        password: secret,
        protocolVersion: 4,
        reconnectPeriod: 10, // a device that comes back at once
        will: {
          topic: topics.build('presence', id),
          payload: Buffer.from(encodeMessageText('presence', offline as never)),
          qos: 1,
          retain: true,
        },
      });
      client.on('error', () => undefined);
      clients.push(client);
    }
    const port = Number(new URL(server.broker.urls.tcp).port);
    const ended = clients.map((client) => new Promise<void>((resolve) => client.once('close', () => resolve())));
    const closing = server.broker.close();
    // The listener is closed before any connection is ended: a reconnect now is refused.
    const attempt = await new Promise<string>((resolve) => {
      const socket = connectTcp(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve('accepted');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    expect(attempt).toBe('ECONNREFUSED');
    // What the server still publishes (a telemetry acknowledgement in flight) is refused with a
    // reason it can tell apart, never handed to aedes' closed emitter ("mqemitter is closed").
    await expect(server.broker.publish(topics.build('telemetry-ack', 'dev-1'), '{}', { qos: 1 })).rejects.toBeInstanceOf(
      BrokerStoppingError,
    );
    await closing;
    // Witness: the devices were connected and the broker ended their connections.
    await Promise.all(ended);
    await server.close();
    for (const client of clients) client.end(true);
    expect(lines.filter((line) => line.level >= 40)).toEqual([]);
    expect(JSON.stringify(lines)).not.toContain('mqemitter');
  });
});
