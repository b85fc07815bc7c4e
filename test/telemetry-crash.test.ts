/**
 * kill -9 of the fleet server while devices stream telemetry: every window the server had
 * acknowledged is still stored after the restart, and the windows it had not acknowledged are
 * stored once each when the devices send them again (some of them twice: mqtt.js resends its
 * unacknowledged QoS 1 publishes on reconnect, and the outbox sends what has no ack).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrollDevices } from '@edgefleet/device-agent';
import { createTopicScheme, type TelemetryAck } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { adminApi, freePort, listAll, startChildServer } from './helpers/child-server.ts';
import { until } from './helpers/fleet.ts';
import { sampleWindow, windowMessage } from './helpers/telemetry.ts';

const TOKEN = 'ingest-crash-admin-token-0123456789abcdefgh';
const BOOT = '0dead0be-0000-4000-8000-000000000000';
const children: ChildProcess[] = [];
const clients: mqtt.MqttClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  for (const child of children) child.kill('SIGKILL');
});

describe('kill -9 of the server mid-ingest', () => {
  it('keeps every acknowledged window, and stores the rest once when they are sent again', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-ingest-crash-'));
    const [port, mqttPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${port}`;
    const api = adminApi(url, TOKEN);
    const start = async () => {
      const child = await startChildServer({ dataDir, port, mqttPort, adminToken: TOKEN });
      children.push(child);
      return child;
    };
    let server = await start();
    const form = new FormData();
    form.append('version', '1.0.0');
    form.append('model', new Blob([mlpModel(7).bytes.slice()]), 'model.onnx');
    await api('POST', '/v1/models/mlp/versions', form);
    const { token } = await api('POST', '/v1/enrollment-tokens', { tags: ['crash'], uses: 10 });
    const { devices } = await enrollDevices(url, token, 10, 'crash');
    const topics = createTopicScheme();
    const closed = sampleWindow();
    const perDevice = 200;
    const acked = new Map<string, Set<number>>(devices.map((d) => [d.id, new Set()]));
    for (const device of devices) {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
        clientId: device.id,
        username: device.id,
        password: device.secret,
        reconnectPeriod: 200,
      });
      client.on('error', () => undefined);
      await client.subscribeAsync(topics.build('telemetry-ack', device.id), { qos: 1 });
      client.on('message', (_topic, payload) => {
        for (const seq of (JSON.parse(payload.toString()) as TelemetryAck).seqs) acked.get(device.id)?.add(seq);
      });
      clients.push(client);
    }
    const ackedCount = () => [...acked.values()].reduce((sum, s) => sum + s.size, 0);
    // Stream the windows; kill -9 once about a third of them are acknowledged.
    const sending = (async () => {
      for (let seq = 0; seq < perDevice; seq++) {
        for (const [i, client] of clients.entries()) {
          const device = devices[i] as { id: string };
          client.publish(topics.build('telemetry', device.id), windowMessage(closed, device.id, BOOT, seq), { qos: 1 });
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    await until(() => ackedCount() >= (perDevice * devices.length) / 3, 'a third of the windows acknowledged', 60_000);
    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
    const acknowledgedBeforeCrash = new Map([...acked].map(([id, seqs]) => [id, new Set(seqs)]));
    await sending;
    server = await start();
    const stored = () => listAll<{ deviceId: string; seq: number }>(api, '/v1/telemetry/windows?model=mlp', 'windows');
    // Nothing acknowledged was lost.
    const afterRestart = await stored();
    const have = new Set(afterRestart.map((w) => `${w.deviceId}/${w.seq}`));
    const lost = [...acknowledgedBeforeCrash].flatMap(([id, seqs]) => [...seqs].filter((seq) => !have.has(`${id}/${seq}`)));
    expect(lost).toEqual([]);
    expect(acknowledgedBeforeCrash.size).toBe(10);
    // What was not acknowledged, the devices send again (as their outbox would): stored once each.
    for (const [i, client] of clients.entries()) {
      const device = devices[i] as { id: string };
      await until(() => client.connected, `${device.id} reconnected`);
      // As the agent does: listen for acknowledgements first, then send what is not acknowledged.
      await client.subscribeAsync(topics.build('telemetry-ack', device.id), { qos: 1 });
      for (let seq = 0; seq < perDevice; seq++) {
        if (!acked.get(device.id)?.has(seq))
          client.publish(topics.build('telemetry', device.id), windowMessage(closed, device.id, BOOT, seq), { qos: 1 });
      }
    }
    await until(async () => (await stored()).length === perDevice * devices.length, 'every window stored', 60_000);
    const final = await stored();
    expect(final).toHaveLength(perDevice * devices.length);
    expect(new Set(final.map((w) => `${w.deviceId}/${w.seq}`)).size).toBe(perDevice * devices.length);
  }, 120_000);
});
