/**
 * kill -9 of the fleet server in the middle of a staged rollout: started again on the same data
 * folder, it continues the rollout from its stored state; every device ends on the new version,
 * and no device installs anything twice.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrollDevices, type Simulation, startSimulation } from '@edgefleet/device-agent';
import type { KeySetPayload, SignedDocument } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { adminApi, freePort, startChildServer } from './helpers/child-server.ts';
import { until } from './helpers/fleet.ts';

const TOKEN = 'crash-test-admin-token-0123456789abcdefgh';
const children: ChildProcess[] = [];
let simulation: Simulation | undefined;

afterAll(async () => {
  await simulation?.stop();
  for (const child of children) child.kill('SIGKILL');
});

async function startServer(dataDir: string, port: number, mqttPort: number): Promise<ChildProcess> {
  const child = await startChildServer({ dataDir, port, mqttPort, adminToken: TOKEN });
  children.push(child);
  return child;
}

describe('kill -9 of the server mid-rollout', () => {
  it('continues the rollout after a restart, with every device on the new version, installed once', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-rollout-crash-'));
    const [port, mqttPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${port}`;
    const api = adminApi(url, TOKEN);
    let server = await startServer(dataDir, port, mqttPort);
    for (const [version, seed] of [
      ['1.0.0', 7],
      ['2.0.0', 8],
    ] as const) {
      const form = new FormData();
      form.append('version', version);
      form.append('model', new Blob([mlpModel(seed).bytes.slice()]), 'model.onnx');
      await api('POST', '/v1/models/mlp/versions', form);
    }
    const keySet = ((await (await fetch(`${url}/v1/keyset`)).json()) as SignedDocument<KeySetPayload>).payload;
    const { token } = await api('POST', '/v1/enrollment-tokens', { tags: ['crash'], uses: 12 });
    const { devices } = await enrollDevices(url, token, 12, 'crash');
    simulation = await startSimulation({
      serverUrl: url,
      mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
      keySet,
      devices,
      faults: { latencyMs: 400 },
    });
    const first = await api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '1.0.0',
      selector: { tags: ['crash'] },
      stages: [{ percent: 100 }],
    });
    await until(async () => (await api('GET', `/v1/rollouts/${first.id}`)).state === 'completed', 'the first rollout');

    const second = await api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { tags: ['crash'] },
      stages: [{ count: 4, soakSeconds: 1 }, { percent: 100 }],
    });
    await until(async () => (await api('GET', `/v1/rollouts/${second.id}`)).stages[0].active >= 1, 'the first stage under way');
    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));

    server = await startServer(dataDir, port, mqttPort);
    await until(
      async () => (await api('GET', `/v1/rollouts/${second.id}`)).state === 'completed',
      'the rollout to finish after the restart',
      // A restarted server and 12 agents reconnecting, while another test file runs beside this one.
      120_000,
    );
    await until(() => simulation?.countActive('mlp', '2.0.0') === 12, 'every device on 2.0.0', 30_000);
    // Two versions, two installs per device: nothing installed twice across the crash.
    expect(simulation.devices.map((d) => d.installs)).toEqual(Array(12).fill(2));
    server.kill('SIGTERM');
  }, 240_000);
});
