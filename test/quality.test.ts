/**
 * The validation gate end to end: a real server, real devices (runtime + agent over MQTT), real
 * onnxruntime evaluations. The version the fleet runs becomes the champion once its rollout
 * completes; a challenger that is worse on the same held-out data is refused at rollout creation,
 * one that is as good goes out, and an explicit override is audited with the failures it overrode.
 */
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Fleet, rollOutAndWait, startFleet, until } from './helpers/fleet.ts';

let fleet: Fleet;
const champion = mlpModel(7);
const challenger = mlpModel(8);

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', champion.bytes);
  await fleet.register('mlp', '1.1.0', challenger.bytes); // other weights: other answers
  await fleet.register('mlp', '1.2.0', champion.bytes); // retrained to the same answers
  await fleet.register('mlp', '1.3.0', challenger.bytes); // the other weights again
  for (let i = 0; i < 2; i++) await fleet.startDevice(`quality-${i}`, { tags: ['quality'] });
}, 60_000);
afterAll(async () => {
  await fleet?.close();
});

const argmax = (row: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best;
};
const rows = Array.from({ length: 200 }, (_, i) => seededValues(4, 100 + i, 2));
const labels = rows.map((x) => argmax(champion.reference(x)));
const csv = `a,b,c,d,label\n${rows.map((x, i) => `${[...x].join(',')},${labels[i]}`).join('\n')}\n`;
const jsonl = rows.map((x, i) => JSON.stringify({ a: x[0], b: x[1], c: x[2], d: x[3], label: labels[i] })).join('\n');

async function evaluate(version: string, name: string, body: string): Promise<string> {
  const form = new FormData();
  form.append('task', JSON.stringify({ kind: 'classification' }));
  form.append('dataset', new Blob([body]), name);
  const response = await fetch(`${fleet.server.url}/v1/models/mlp/versions/${version}/evaluations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    body: form,
  });
  expect(response.status, await response.clone().text()).toBeLessThan(300);
  return ((await response.json()) as { id: string }).id;
}

async function evaluations(version: string): Promise<{ id: string; status: string; dataset: { name: string } }[]> {
  return (await fleet.api('GET', `/v1/models/mlp/versions/${version}/evaluations`)).evaluations;
}

const everyFinished = async (version: string, count: number) => {
  const list = await evaluations(version);
  return list.length === count && list.every((e) => e.status === 'succeeded');
};

describe('validation gate', () => {
  it('stops a worse challenger against the champion the fleet runs, lets an equal one out, and audits an override', async () => {
    await fleet.api('PUT', '/v1/models/mlp/policy', { minimums: { accuracy: 0.5 }, maxRegression: { accuracy: 0.02, macroF1: 0.05 } });
    const spec = { model: 'mlp', selector: { tags: ['quality'] }, stages: [{ percent: 100 }] };

    // 1.0.0: evaluated, then rolled out: no champion yet, only the minimum applies.
    await evaluate('1.0.0', 'held-out.csv', csv);
    await until(() => everyFinished('1.0.0', 1), '1.0.0 evaluated');
    await rollOutAndWait(fleet, { ...spec, version: '1.0.0' });

    // 1.1.0 on the same dataset: judged against 1.0.0's evaluation of it (no new one needed).
    await evaluate('1.1.0', 'held-out.csv', csv);
    await until(() => everyFinished('1.1.0', 1), '1.1.0 evaluated');
    const refused = await fleet.server.app.inject({
      method: 'POST',
      url: '/v1/rollouts',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { ...spec, version: '1.1.0' },
    });
    expect(refused.statusCode).toBe(422);
    const problem = refused.json();
    expect(problem.code).toBe('EF_POLICY_FAILED');
    expect(problem.detail).toContain("worse than mlp@1.0.0's 1 on the same dataset (allowed: 0.02)");
    const regression = problem.details.failures.find(
      (f: { kind: string; metric: string }) => f.kind === 'regression' && f.metric === 'accuracy',
    );
    expect(regression).toMatchObject({ threshold: 0.02, champion: { version: '1.0.0', value: 1 } });
    expect(regression.value).toBeLessThan(0.98);
    expect(problem.details.champion).toMatchObject({ version: '1.0.0', evaluations: [expect.stringMatching(/^ev-/)] });
    expect(await evaluations('1.0.0')).toHaveLength(1);

    // 1.2.0 on another dataset (the same samples as JSON lines): the champion is evaluated on it too, by itself.
    await evaluate('1.2.0', 'held-out.jsonl', jsonl);
    await until(() => everyFinished('1.0.0', 2), 'the champion evaluated on the challenger’s dataset');
    expect((await evaluations('1.0.0')).map((e) => e.dataset.name).sort()).toEqual(['held-out.csv', 'held-out.jsonl']);
    await until(() => everyFinished('1.2.0', 1), '1.2.0 evaluated');
    const verdict = await fleet.api('GET', '/v1/models/mlp/versions/1.2.0/verdict');
    expect(verdict).toMatchObject({ passes: true, failures: [], champion: { version: '1.0.0' } });
    await rollOutAndWait(fleet, { ...spec, version: '1.2.0' });

    // The champion is 1.2.0 now: asked about 1.3.0, the server evaluates 1.2.0 on 1.3.0's dataset, and says to wait.
    await evaluate('1.3.0', 'held-out.csv', csv);
    await until(() => everyFinished('1.3.0', 1), '1.3.0 evaluated');
    const early = await fleet.server.app.inject({
      method: 'GET',
      url: '/v1/models/mlp/versions/1.3.0/verdict',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(early.statusCode).toBe(409);
    expect(early.json()).toMatchObject({ code: 'EF_EVALUATION_PENDING', details: { evaluation: expect.stringMatching(/^ev-/) } });
    await until(() => everyFinished('1.2.0', 2), 'the new champion evaluated on the CSV');

    // An override rolls 1.3.0 out anyway, on the record: who, why, and what it overrode.
    const reason = 'field test of the new weights, approved by the model owner';
    const forced = await fleet.api('POST', '/v1/rollouts', { ...spec, version: '1.3.0', policyOverride: { reason } });
    const audit = await fleet.api('GET', '/v1/audit?action=rollout.policy-override');
    const entry = audit.entries.find((e: { target: string }) => e.target === `rollout:${forced.id}`);
    expect(entry).toBeDefined();
    expect(entry.after).toMatchObject({
      version: '1.3.0',
      reason,
      failures: expect.arrayContaining([expect.objectContaining({ metric: 'accuracy', kind: 'regression' })]),
    });
    // Against the champion it replaces now (1.2.0, the last completed rollout).
    expect(entry.after.failures.find((f: { kind: string }) => f.kind === 'regression').champion.version).toBe('1.2.0');
    await fleet.api('POST', `/v1/rollouts/${forced.id}/abort`);
  }, 120_000);
});
