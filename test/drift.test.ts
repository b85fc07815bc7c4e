/**
 * (About 420 lines: the cases share one fleet, its 16 devices and their telemetry, set up once.)
 *
 * Fleet-wide drift with simulated devices: a tabular model whose reference dataset is uploaded
 * with it, 16 devices in four tag groups sending real telemetry windows (the runtime's own
 * profiles) over MQTT, one group's inputs shifted in one column. The server scores every group per
 * time bucket, stores the series, raises one alert for the shifted group (and the fleet as a whole)
 * after K drifted buckets, and delivers it to a webhook, HMAC-signed, retried after a failure.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { enrollDevices, type Simulation, simulatedWindow, startSimulation } from '@edgefleet/device-agent';
import { verifyWebhookSignature } from '@edgefleet/fleet-server';
import type { ManifestPayload, TelemetrySpec } from '@edgefleet/protocol';
import { MLP_INPUTS, MLP_OUTPUTS, mlpModel, splitmix } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_DEVICES } from '../apps/fleet-server/src/drift/evaluator.ts';
import { FAMILY_P_VALUE, mergeWindows, scoreBucket } from '../apps/fleet-server/src/drift/scoring.ts';
import { ADMIN_TOKEN, type Fleet, type FleetDevice, rollOutAndWait, startFleet, until } from './helpers/fleet.ts';
import { referenceCsv as referenceRows, TABULAR_FEATURES } from './helpers/telemetry.ts';

const SECRET = 'whsec-test-0123456789';
const TABULAR: TelemetrySpec = {
  features: [
    ...TABULAR_FEATURES,
    { name: 'label', source: 'output', tensor: 'scores', kind: 'class', labels: ['stay', 'churn', 'unsure'] },
  ],
};
const GROUPS = ['a', 'b', 'c', 'd'];
const SHIFTED = 'group=c';

/** A reference dataset drawn from what devices will see before the shift: N(0, 1) columns, uniform classes. */
const referenceCsv = (rows: number) => referenceRows(rows, { labels: ['stay', 'churn', 'unsure'] });

interface Delivery {
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  readonly verified: boolean;
}

describe('fleet-wide drift', () => {
  let fleet: Fleet;
  let simulation: Simulation;
  let receiver: Server;
  const deliveries: Delivery[] = [];
  let shiftOn = false;

  beforeAll(async () => {
    let requests = 0;
    receiver = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      request.on('end', () => {
        requests++;
        // The first delivery attempt fails: the server must retry it, and record both attempts.
        if (requests === 1) {
          response.writeHead(503).end();
          return;
        }
        deliveries.push({
          headers: request.headers,
          body,
          verified: verifyWebhookSignature(SECRET, request.headers['x-edgefleet-signature'] as string, body),
        });
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    fleet = await startFleet({
      driftBucketSeconds: 1,
      driftEvaluateMs: 3_600_000, // passes run when the test asks (POST /v1/drift/evaluate)
      driftAlertWindows: 3,
      webhookUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/drift`,
      webhookSecret: SECRET,
    });
    await upload('1.0.0', mlpModel(5).bytes, referenceCsv(5000));

    const devices: { id: string; secret: string }[] = [];
    for (const group of GROUPS) {
      const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['fleet=drift', `group=${group}`], uses: 4 });
      devices.push(...(await enrollDevices(fleet.server.url, token, 4, `drift-${group}`)).devices);
    }
    simulation = await startSimulation({
      serverUrl: fleet.server.url,
      mqttUrl: fleet.server.broker.urls.tcp,
      keySet: fleet.keySet,
      devices,
      telemetry: {
        windowMs: 100,
        runs: 20,
        shiftColumn: 1, // income
        shift: (id) => (shiftOn && id.startsWith('drift-c') ? 1 : 0),
      },
    });
    await rollOutAndWait(fleet, { model: 'churn', version: '1.0.0', selector: { tags: ['fleet=drift'] }, stages: [{ percent: 100 }] });
  }, 60_000);

  afterAll(async () => {
    await simulation?.stop();
    await fleet?.close();
    receiver?.close();
  });

  const evaluate = () => fleet.api('POST', '/v1/drift/evaluate');
  async function upload(version: string, bytes: Uint8Array, reference: string) {
    const form = new FormData();
    form.append('version', version);
    form.append('telemetry', JSON.stringify(TABULAR));
    form.append('model', new Blob([bytes.slice()]), 'model.onnx');
    form.append('reference', new Blob([reference], { type: 'text/csv' }), 'reference.csv');
    const response = await fleet.server.app.inject({
      method: 'POST',
      url: '/v1/models/churn/versions',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: form,
    });
    expect(response.statusCode, response.body).toBe(201);
  }
  const scores = async (group: string) =>
    (await fleet.api('GET', `/v1/drift/scores?model=churn&version=1.0.0&group=${encodeURIComponent(group)}`)).scores as {
      bucketStart: string;
      drifted: boolean;
      driftedFeatures: string[];
      devices: number;
      runs: number;
    }[];

  it('flags the shifted group, only it among the groups, alerts once through the signed webhook, and resolves when it recovers', async () => {
    // Before the shift: four seconds of telemetry, scored; no alert. (A bucket is flagged wrongly
    // at most 1% of the time, so at most one of a group's buckets may be; an alert needs three.)
    // Wait until every group has three buckets of four devices scored (the evaluation is the witness).
    await until(async () => {
      await evaluate();
      for (const group of GROUPS) {
        const series = await scores(`group=${group}`);
        if (series.filter((s) => s.devices === 4).length < 3) return false;
      }
      return true;
    }, 'three scored buckets of every group');
    for (const group of GROUPS) {
      const series = await scores(`group=${group}`);
      expect(series.length).toBeGreaterThanOrEqual(3);
      expect(series.filter((s) => s.drifted).length).toBeLessThanOrEqual(1);
      expect(series.at(-2)).toMatchObject({ devices: 4 });
    }
    expect((await fleet.api('GET', '/v1/drift/alerts?model=churn')).alerts).toEqual([]);
    const status = await fleet.api('GET', '/v1/models/churn/versions/1.0.0/drift');
    expect(status).toMatchObject({ reference: { source: 'dataset reference.csv (5000 rows)', runs: 5000 } });
    expect(['ok', 'warning']).toContain(status.status);

    // Group c starts seeing shifted incomes (+1 standard deviation).
    const shiftedAt = Date.now();
    shiftOn = true;
    await until(
      async () => {
        await evaluate();
        return (await fleet.api('GET', '/v1/drift/alerts?model=churn&state=firing')).alerts.some(
          (a: { group: string }) => a.group === SHIFTED,
        );
      },
      'an alert for the shifted group',
      20_000,
    );
    // Flagged from the first whole bucket after the shift, on income; the other groups not (at
    // most one stray bucket each, never an alert).
    // Counted in buckets, not wall-clock time: a loaded machine scores fewer buckets per second.
    const whole = (await scores(SHIFTED))
      .filter((s) => Date.parse(s.bucketStart) >= shiftedAt)
      .sort((a, b) => Date.parse(a.bucketStart) - Date.parse(b.bucketStart));
    const firstFlagged = whole.find((s) => s.drifted);
    expect(whole.indexOf(firstFlagged as (typeof whole)[number])).toBeGreaterThanOrEqual(0);
    expect(whole.indexOf(firstFlagged as (typeof whole)[number])).toBeLessThanOrEqual(1);
    expect(firstFlagged?.driftedFeatures).toContain('income');
    for (const group of GROUPS.filter((g) => `group=${g}` !== SHIFTED)) {
      expect((await scores(`group=${group}`)).filter((s) => s.drifted).length).toBeLessThanOrEqual(1);
    }
    const alerts = (await fleet.api('GET', '/v1/drift/alerts?model=churn')).alerts as {
      group: string;
      features: string[];
      state: string;
    }[];
    // An alert for the group (and maybe for the groups holding all devices, `*` and fleet=drift: their
    // mixture moved too); none for a, b, d.
    expect(alerts.map((a) => a.group)).toContain(SHIFTED);
    for (const alert of alerts) expect([ALL_DEVICES, 'fleet=drift', SHIFTED]).toContain(alert.group);
    expect(alerts.find((a) => a.group === SHIFTED)?.features).toContain('income');
    // What the score summarises, shown: the shifted group's live incomes against the reference,
    // one standard deviation up (median ~0 → ~1; the top reference decile holds ~40%, not 10%).
    const since = new Date(shiftedAt).toISOString();
    const to = new Date().toISOString();
    const shifted = await fleet.api(
      'GET',
      `/v1/models/churn/versions/1.0.0/distribution?feature=income&group=${encodeURIComponent(SHIFTED)}&since=${since}&until=${to}`,
    );
    const median = (summary: { quantiles: { q: number; value: number }[] }) => summary.quantiles.find((q) => q.q === 0.5)?.value as number;
    expect(shifted).toMatchObject({ kind: 'numeric', feature: 'income', group: SHIFTED, categories: null });
    expect(shifted.windows).toBeGreaterThan(0);
    expect(Math.abs(median(shifted.reference))).toBeLessThan(0.25);
    expect(median(shifted.live)).toBeGreaterThan(0.6);
    expect(shifted.histogram.edges).toHaveLength(9);
    expect(shifted.histogram.reference.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 6);
    expect(shifted.histogram.live.at(-1)).toBeGreaterThan(0.25);
    const steadyGroup = await fleet.api(
      'GET',
      `/v1/models/churn/versions/1.0.0/distribution?feature=income&group=group%3Da&since=${since}&until=${to}`,
    );
    expect(Math.abs(median(steadyGroup.live))).toBeLessThan(0.35);
    expect(steadyGroup.histogram.live.at(-1)).toBeLessThan(0.2);
    const unknown = await fleet.server.app.inject({
      method: 'GET',
      url: '/v1/models/churn/versions/1.0.0/distribution?feature=nope',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(unknown.json()).toMatchObject({ status: 404, code: 'EF_NOT_FOUND' });
    const drift = await fleet.api('GET', '/v1/models/churn/versions/1.0.0/drift');
    expect(drift.status).toBe('drifting');
    const statuses = Object.fromEntries(drift.groups.map((g: { group: string; status: string }) => [g.group, g.status]));
    expect(statuses[SHIFTED]).toBe('drifting');
    for (const group of ['group=a', 'group=b', 'group=d']) expect(['ok', 'warning']).toContain(statuses[group]);
    // The same status in the metrics Prometheus scrapes: 2 is drifting.
    const metrics = await fleet.server.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(metrics.body).toContain(`edgefleet_drift_status{model="churn",version="1.0.0",group="${SHIFTED}"} 2`);
    const score = new RegExp(`^edgefleet_drift_score\\{model="churn",version="1.0.0",group="${SHIFTED}"\\} (\\S+)$`, 'm').exec(
      metrics.body,
    );
    expect(Number(score?.[1])).toBeGreaterThan(0);
    expect(metrics.body).toMatch(/^edgefleet_telemetry_windows_total\{result="stored"\} [1-9]\d*$/m);

    // The webhook: delivered (after one failed attempt, retried), signed, deduplicated.
    await until(
      async () => {
        await evaluate();
        return deliveries.some((d) => d.body.includes(`"group":"${SHIFTED}"`));
      },
      'the webhook delivery',
      20_000,
    );
    const delivered = deliveries.find((d) => d.body.includes(`"group":"${SHIFTED}"`));
    expect(delivered?.verified).toBe(true);
    expect(delivered?.headers['x-edgefleet-event']).toBe('drift.firing');
    expect(JSON.parse(delivered?.body ?? '{}')).toMatchObject({
      event: 'drift.firing',
      alert: { model: 'churn', version: '1.0.0', group: SHIFTED, features: expect.arrayContaining(['income']), windows: 3 },
    });
    // Tampering with one byte breaks the signature.
    expect(
      verifyWebhookSignature(
        SECRET,
        delivered?.headers['x-edgefleet-signature'] as string,
        delivered?.body.replace('income', 'incomf') ?? '',
      ),
    ).toBe(false);
    // More drifted buckets do not raise the same alert again: two more of them scored are the witness.
    const driftedSoFar = (await scores(SHIFTED)).filter((s) => s.drifted).length;
    await until(async () => {
      await evaluate();
      return (await scores(SHIFTED)).filter((s) => s.drifted).length >= driftedSoFar + 2;
    }, 'two more drifted buckets of the shifted group');
    const after = (await fleet.api('GET', '/v1/drift/alerts?model=churn')).alerts as { group: string }[];
    expect(after.filter((a) => a.group === SHIFTED)).toHaveLength(1);
    const recorded = (await fleet.api('GET', '/v1/drift/alerts?model=churn')).alerts.flatMap(
      (a: { deliveries: unknown[] }) => a.deliveries,
    );
    expect(recorded.some((d: { attempts: number; deliveredAt: string | null }) => d.attempts === 2 && d.deliveredAt !== null)).toBe(true);

    // The group recovers: after K clean buckets the alert resolves, and that is delivered too.
    shiftOn = false;
    await until(
      async () => {
        await evaluate();
        return deliveries.some((d) => d.headers['x-edgefleet-event'] === 'drift.resolved' && d.body.includes(`"group":"${SHIFTED}"`));
      },
      'the alert to resolve',
      20_000,
    );
    expect(
      (await fleet.api('GET', `/v1/drift/alerts?model=churn&state=firing`)).alerts.map((a: { group: string }) => a.group),
    ).not.toContain(SHIFTED);
    expect(deliveries.every((d) => d.verified)).toBe(true);
  }, 90_000);

  it('gates a rollout on the drift score: rolled back where the inputs drifted, completed where they did not', async () => {
    await upload('1.1.0', mlpModel(5).bytes, referenceCsv(5000));
    shiftOn = true;
    const gates = { maxDriftScore: 0.1, minDevicesReporting: 3 };
    const drifting = await fleet.api('POST', '/v1/rollouts', {
      model: 'churn',
      version: '1.1.0',
      selector: { tags: [SHIFTED] },
      stages: [{ percent: 100, soakSeconds: 1 }],
      gates,
    });
    const steady = await fleet.api('POST', '/v1/rollouts', {
      model: 'churn',
      version: '1.1.0',
      selector: { tags: ['group=a'] },
      stages: [{ percent: 100, soakSeconds: 1 }],
      gates,
    });
    const final = async (id: string) => {
      let view: { state: string; reason: Record<string, unknown> | null } | undefined;
      await until(
        async () => {
          view = await fleet.api('GET', `/v1/rollouts/${id}`);
          return view?.state === 'rolled_back' || view?.state === 'completed';
        },
        `rollout ${id} to finish`,
        30_000,
      );
      return view as { state: string; reason: Record<string, unknown> | null };
    };
    const [rolledBack, completed] = [await final(drifting.id), await final(steady.id)];
    expect(rolledBack.state).toBe('rolled_back');
    expect(rolledBack.reason).toMatchObject({
      gate: 'maxDriftScore',
      driftedFeatures: expect.arrayContaining(['income']),
      reference: 'churn@1.1.0',
      limit: 0.1,
    });
    expect(rolledBack.reason?.devicesReporting).toBeGreaterThanOrEqual(3);
    expect(completed.state, JSON.stringify(completed.reason)).toBe('completed');
    await until(() => simulation.countActive('churn', '1.1.0') === 4, 'group a on 1.1.0, group c back on 1.0.0');
    expect(simulation.devices.filter((d) => d.id.startsWith('drift-c')).every((d) => d.active.get('churn') === '1.0.0')).toBe(true);
    shiftOn = false;
  }, 60_000);
});

describe('rollout gate on the shift of outputs against the replaced version', () => {
  let fleet: Fleet;
  let devices: FleetDevice[] = [];
  let serving = true;
  const loops: Promise<void>[] = [];

  beforeAll(async () => {
    fleet = await startFleet();
    devices = await Promise.all(
      ['out-1', 'out-2', 'out-3'].map((id) => fleet.startDevice(id, { tags: ['fleet=outputs'], telemetryWindowMs: 200 })),
    );
    await fleet.register('scorer', '1.0.0', mlpModel(12).bytes);
    const first = await fleet.api('POST', '/v1/rollouts', {
      model: 'scorer',
      version: '1.0.0',
      selector: { tags: ['fleet=outputs'] },
      stages: [{ percent: 100 }],
    });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${first.id}`)).state === 'completed', 'version 1 everywhere');
    // The app on each device keeps serving requests (inputs N(0, 1)), whatever version is active.
    for (const [index, device] of devices.entries()) {
      const random = splitmix(700 + index);
      const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      loops.push(
        (async () => {
          while (serving) {
            await device.runtime
              .run('scorer', { features: { dtype: 'float32', shape: [1, 4], data: Float32Array.from({ length: 4 }, normal) } })
              .catch(() => undefined);
            await new Promise((resolve) => setTimeout(resolve, 2));
          }
        })(),
      );
    }
    await until(
      async () => (await fleet.api('GET', '/v1/telemetry/windows?model=scorer&version=1.0.0')).windows.length >= 6,
      'telemetry of version 1',
    );
  }, 60_000);

  afterAll(async () => {
    serving = false;
    await Promise.all(loops);
    await fleet?.close();
  });

  async function rollOut(version: string) {
    const rollout = await fleet.api('POST', '/v1/rollouts', {
      model: 'scorer',
      version,
      selector: { tags: ['fleet=outputs'] },
      stages: [{ count: 1, soakSeconds: 1 }, { percent: 100 }],
      gates: { maxOutputShift: 0.1, minDevicesReporting: 1 },
    });
    let view: { state: string; reason: Record<string, unknown> | null } | undefined;
    await until(
      async () => {
        view = await fleet.api('GET', `/v1/rollouts/${rollout.id}`);
        return view?.state === 'rolled_back' || view?.state === 'completed';
      },
      `the rollout of ${version} to finish`,
      45_000,
    );
    return view as { state: string; reason: Record<string, unknown> | null };
  }

  it('rolls back a version whose answers moved away from the version it replaces, at the first stage', async () => {
    // Other weights: the class distribution moves (about 25/30/45% → 65/1/34% on these inputs).
    await fleet.register('scorer', '2.0.0', mlpModel(9).bytes);
    const view = await rollOut('2.0.0');
    expect(view.state).toBe('rolled_back');
    expect(view.reason).toMatchObject({ gate: 'maxOutputShift', stage: 0, against: 'scorer@1.0.0', limit: 0.1 });
    expect(Number(view.reason?.shift)).toBeGreaterThan(0.1);
    await until(() => devices.every((d) => d.activeVersion('scorer') === '1.0.0'), 'every device back on 1.0.0');
  }, 60_000);

  it('lets through a version that answers as the one it replaces', async () => {
    await fleet.register('scorer', '2.0.1', mlpModel(12).bytes);
    const view = await rollOut('2.0.1');
    expect(view.state, JSON.stringify(view.reason)).toBe('completed');
    expect(devices.every((d) => d.activeVersion('scorer') === '2.0.1')).toBe(true);
  }, 60_000);
});

describe('drift false alarms and detection over 200 windows', () => {
  const manifest = {
    name: 'churn',
    version: '1.0.0',
    telemetry: TABULAR,
    model: {
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
    },
  } as unknown as ManifestPayload;

  /** One bucket of a group: 4 devices × 10 windows of 20 runs, as the simulated fleet sends them. */
  function bucket(seed: number, shift: number) {
    const random = splitmix(seed);
    const windows = Array.from({ length: 40 }, (_, i) => simulatedWindow(manifest, i, i + 1, { runs: 20, shiftColumn: 1 }, shift, random));
    return mergeWindows(windows);
  }

  it('flags at most 1% of 200 unchanged windows of a group, and catches a half-SD shift of one column in at least 99%', () => {
    const reference = bucket(1, 0);
    for (const [, profile] of reference) expect(profile).toBeDefined();
    let falseAlarms = 0;
    let caught = 0;
    for (let i = 0; i < 200; i++) {
      if (scoreBucket(reference, bucket(1000 + i, 0)).drifted.length > 0) falseAlarms++;
      const shifted = scoreBucket(reference, bucket(5000 + i, 0.5));
      if (shifted.drifted.includes('income')) caught++;
    }
    expect(falseAlarms).toBeLessThanOrEqual(200 * FAMILY_P_VALUE);
    expect(caught).toBeGreaterThanOrEqual(198);
  });
});
