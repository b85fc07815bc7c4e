/**
 * Evaluations through the API on a real server: real onnxruntime sessions on real models, metrics
 * checked against counts made independently in the test from the models' reference
 * implementations (test-utils), and the promotion policy at rollout creation.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;
const champion = mlpModel(7);
const challenger = mlpModel(8);

beforeAll(async () => {
  server = await startTestServer();
  for (const [version, model] of [
    ['1.0.0', champion],
    ['1.1.0', challenger],
  ] as const) {
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/models/mlp/versions',
      headers: server.auth,
      payload: uploadForm(version, model.bytes),
    });
    expect(response.statusCode, response.body).toBe(201);
  }
}, 60_000);
afterAll(async () => {
  await server.close();
});

const argmax = (row: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best;
};

/** Samples whose top two scores are at least 1e-3 apart under both models (no near-ties for float rounding to decide). */
function samples(n: number, seed: number): Float32Array[] {
  const out: Float32Array[] = [];
  const pool = seededValues(n * 16, seed, 2);
  for (let i = 0; out.length < n; i++) {
    const x = pool.subarray(i * 4, i * 4 + 4);
    const clear = [champion, challenger].every((m) => {
      const s = [...m.reference(x)].sort((a, b) => b - a);
      return (s[0] as number) - (s[1] as number) >= 1e-3;
    });
    if (clear) out.push(x);
  }
  return out;
}

const rows = samples(300, 11);
/** The truth: the champion's class, wrong on every 10th sample. */
const truth = rows.map((x, i) => (argmax(champion.reference(x)) + (i % 10 === 0 ? 1 : 0)) % 3);

function naiveClassification(predicted: number[], actual: number[]) {
  const classes = [0, 1, 2];
  const per = classes.map((c) => {
    const tp = predicted.filter((p, i) => p === c && actual[i] === c).length;
    const precision = tp / Math.max(1, predicted.filter((p) => p === c).length);
    const recall = tp / Math.max(1, actual.filter((a) => a === c).length);
    return { precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0 };
  });
  return {
    accuracy: predicted.filter((p, i) => p === actual[i]).length / actual.length,
    macroF1: per.reduce((s, c) => s + c.f1, 0) / 3,
    per,
  };
}

async function evaluate(
  version: string,
  dataset: { name: string; body: string | Uint8Array; type?: string },
  task: unknown,
  headers: Record<string, string> = server.auth,
) {
  const form = new FormData();
  form.append('task', JSON.stringify(task));
  form.append(
    'dataset',
    new Blob([typeof dataset.body === 'string' ? dataset.body : dataset.body.slice()], { type: dataset.type ?? '' }),
    dataset.name,
  );
  return server.app.inject({ method: 'POST', url: `/v1/models/mlp/versions/${version}/evaluations`, headers, payload: form });
}

/** Polls the evaluation until it has finished (the job's own state is the event). */
async function finished(id: string) {
  for (;;) {
    const body = (await server.app.inject({ method: 'GET', url: `/v1/evaluations/${id}`, headers: server.auth })).json();
    if (body.status === 'succeeded' || body.status === 'failed') return body;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const csv = `a,b,c,d,label\n${rows.map((x, i) => `${[...x].join(',')},${truth[i]}`).join('\n')}\n`;

describe('evaluations', () => {
  it('evaluates a version on a CSV dataset as a job, with metrics equal to an independent count', async () => {
    const response = await evaluate('1.0.0', { name: 'held-out.csv', body: csv }, { kind: 'classification' });
    expect(response.statusCode, response.body).toBe(202);
    const queued = response.json();
    expect(response.headers.location).toBe(`/v1/evaluations/${queued.id}`);
    expect(queued).toMatchObject({ model: 'mlp', version: '1.0.0', dataset: { name: 'held-out.csv', format: 'csv' }, metrics: null });
    const done = await finished(queued.id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const predicted = rows.map((x) => argmax(champion.reference(x)));
    const expected = naiveClassification(predicted, truth);
    expect(done.progress).toEqual({ samples: 300, total: 300, fraction: 1 });
    expect(done.metrics.samples).toBe(300);
    expect(done.metrics.accuracy).toBeCloseTo(expected.accuracy, 12);
    expect(done.metrics.accuracy).toBeCloseTo(0.9, 12); // every 10th label is wrong on purpose
    expect(done.metrics.macroF1).toBeCloseTo(expected.macroF1, 12);
    for (const [c, metrics] of done.metrics.classes.entries()) {
      expect(metrics.label).toBe(String(c));
      expect(metrics.precision).toBeCloseTo(expected.per[c]?.precision ?? -1, 12);
      expect(metrics.recall).toBeCloseTo(expected.per[c]?.recall ?? -1, 12);
    }
    expect(done.metrics.accuracyInterval.low).toBeLessThan(0.9);
    expect(done.metrics.accuracyInterval.high).toBeGreaterThan(0.9);

    // The version record carries its latest successful evaluation.
    const record = (await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions/1.0.0', headers: server.auth })).json();
    expect(record.evaluation).toMatchObject({
      id: queued.id,
      dataset: 'held-out.csv',
      task: 'classification',
      metrics: { accuracy: done.metrics.accuracy },
    });
    // The same dataset and task: the same evaluation, not run again.
    const again = await evaluate('1.0.0', { name: 'copy.csv', body: csv }, { kind: 'classification' });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ id: queued.id, status: 'succeeded' });
    // The same samples as JSON lines: another file, the same numbers.
    const jsonl = rows.map((x, i) => JSON.stringify({ inputs: { features: [[...x]] }, label: truth[i] })).join('\n');
    const other = await evaluate('1.0.0', { name: 'held-out.jsonl', body: jsonl }, { kind: 'classification' });
    expect(other.statusCode).toBe(202);
    const second = await finished(other.json().id);
    expect(second.metrics).toEqual(done.metrics);
    // Listed, newest first, a page at a time.
    const page = (
      await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions/1.0.0/evaluations?limit=1', headers: server.auth })
    ).json();
    expect(page.evaluations.map((e: { id: string }) => e.id)).toEqual([second.id]);
    const rest = (
      await server.app.inject({
        method: 'GET',
        url: `/v1/models/mlp/versions/1.0.0/evaluations?limit=1&cursor=${page.next}`,
        headers: server.auth,
      })
    ).json();
    expect(rest.evaluations.map((e: { id: string }) => e.id)).toEqual([queued.id]);
  });

  it('evaluates on tensors in an .npz (np.savez_compressed), class names mapped from the output index', async () => {
    const npz = await readFile(join(import.meta.dirname, 'fixtures', 'compressed.npz'));
    const labels = ['cat', 'dog', 'bird'];
    const response = await evaluate('1.1.0', { name: 'tensors.npz', body: npz }, { kind: 'classification', labels });
    expect(response.statusCode, response.body).toBe(202);
    const done = await finished(response.json().id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    // The fixture: features[i][j] = sin(4i + j) as float32, label = i % 3 (an index into labels).
    const features = Array.from({ length: 50 }, (_, i) => Float32Array.from({ length: 4 }, (_, j) => Math.sin(i * 4 + j)));
    const predicted = features.map((x) => argmax(challenger.reference(x)));
    const actual = features.map((_, i) => i % 3);
    expect(done.metrics.samples).toBe(50);
    expect(done.metrics.accuracy).toBeCloseTo(naiveClassification(predicted, actual).accuracy, 12);
    expect(done.metrics.classes.map((c: { label: string }) => c.label).sort()).toEqual(['bird', 'cat', 'dog']);
  });

  it('computes binary (AUC) and regression metrics from one output element', async () => {
    const score = (x: Float32Array) => champion.reference(x)[1] as number;
    const binary = rows.map((x, i) => score(x) >= 0.3 !== (i % 7 === 0));
    const body = `f1,f2,f3,f4,label\n${rows.map((x, i) => `${[...x].join(',')},${binary[i]}`).join('\n')}`;
    const response = await evaluate('1.0.0', { name: 'binary.csv', body }, { kind: 'binary', scoreIndex: 1, threshold: 0.3 });
    expect(response.statusCode, response.body).toBe(202);
    const done = await finished(response.json().id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const positives = rows.filter((_, i) => binary[i]).map(score);
    const negatives = rows.filter((_, i) => !binary[i]).map(score);
    let wins = 0;
    for (const p of positives) for (const n of negatives) wins += p > n ? 1 : p === n ? 0.5 : 0;
    expect(done.metrics.auc).toBeCloseTo(wins / (positives.length * negatives.length), 6);
    expect(done.metrics.accuracy).toBeCloseTo(rows.filter((x, i) => score(x) >= 0.3 === binary[i]).length / rows.length, 12);

    const target = rows.map((x, i) => (champion.reference(x)[2] as number) + (i % 2 === 0 ? 0.25 : -0.5));
    const regression = `f1,f2,f3,f4,label\n${rows.map((x, i) => `${[...x].join(',')},${target[i]}`).join('\n')}`;
    const second = await finished(
      (await evaluate('1.0.0', { name: 'regression.csv', body: regression }, { kind: 'regression', scoreIndex: 2 })).json().id,
    );
    expect(second.status, JSON.stringify(second.error)).toBe('succeeded');
    // Errors are exactly 0.25 and 0.5, alternating (float32 outputs: to 5 digits).
    expect(second.metrics.mae).toBeCloseTo(0.375, 5);
    expect(second.metrics.rmse).toBeCloseTo(Math.sqrt((0.25 ** 2 + 0.5 ** 2) / 2), 5);
  });

  it('refuses what cannot be evaluated with a clear code, before queueing; authentication first', async () => {
    const unauthenticated = await evaluate('1.0.0', { name: 'x.csv', body: 'garbage' }, { kind: 'classification' }, {});
    expect(unauthenticated.statusCode).toBe(401);
    const narrow = await evaluate('1.0.0', { name: 'narrow.csv', body: 'a,b,label\n1,2,0\n' }, { kind: 'classification' });
    expect(narrow.statusCode).toBe(400);
    expect(narrow.json()).toMatchObject({
      code: 'EF_DATASET_INVALID',
      detail: expect.stringContaining('declared [batch, 4] but a sample is [2]'),
    });
    const output = await evaluate('1.0.0', { name: 'held-out.csv', body: csv }, { kind: 'classification', output: 'logits' });
    expect(output.json()).toMatchObject({
      code: 'EF_DATASET_INVALID',
      detail: expect.stringContaining('no output "logits" (outputs: scores)'),
    });
    const format = await evaluate('1.0.0', { name: 'data.parquet', body: 'PAR1' }, { kind: 'classification' });
    expect(format.json()).toMatchObject({
      code: 'EF_DATASET_INVALID',
      detail: expect.stringContaining('not CSV (.csv), JSON lines (.jsonl) nor NumPy (.npz)'),
    });
    const task = await evaluate('1.0.0', { name: 'held-out.csv', body: csv }, { kind: 'ranking' });
    expect(task.statusCode).toBe(400);
    const missing = await evaluate('9.9.9', { name: 'held-out.csv', body: csv }, { kind: 'classification' });
    expect(missing.statusCode).toBe(404);
    // A bad row far into the file fails the job, which says where.
    const late = `${csv}1,2,3,oops,1\n`;
    const response = await evaluate('1.0.0', { name: 'late.csv', body: late }, { kind: 'classification' });
    expect(response.statusCode).toBe(202);
    const failed = await finished(response.json().id);
    expect(failed).toMatchObject({
      status: 'failed',
      metrics: null,
      error: { code: 'EF_DATASET_INVALID', message: expect.stringContaining('CSV row 301, column "d"') },
    });
  });

  it('evaluates a version registered with its evaluation dataset; a dataset that does not fit refuses the upload', async () => {
    const form = uploadForm('2.0.0', champion.bytes, { evaluationTask: { kind: 'classification' } });
    form.append('evaluation', new Blob([csv], { type: 'text/csv' }), 'held-out.csv');
    const response = await server.app.inject({ method: 'POST', url: '/v1/models/mlp/versions', headers: server.auth, payload: form });
    expect(response.statusCode, response.body).toBe(201);
    const { evaluation } = response.json();
    expect(evaluation).toMatchObject({ id: expect.stringMatching(/^ev-/) });
    const done = await finished(evaluation.id);
    expect(done).toMatchObject({ version: '2.0.0', status: 'succeeded', metrics: { samples: 300 } });
    expect(done.metrics.accuracy).toBeCloseTo(0.9, 12); // the same weights as 1.0.0, the same numbers

    const bad = uploadForm('2.0.1', champion.bytes, { evaluationTask: { kind: 'classification' } });
    bad.append('evaluation', new Blob(['a,b,label\n1,2,0\n']), 'narrow.csv');
    const refused = await server.app.inject({ method: 'POST', url: '/v1/models/mlp/versions', headers: server.auth, payload: bad });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().code).toBe('EF_DATASET_INVALID');
    expect((await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions/2.0.1', headers: server.auth })).statusCode).toBe(404);
    const untasked = uploadForm('2.0.1', champion.bytes);
    untasked.append('evaluation', new Blob([csv]), 'held-out.csv');
    const noTask = await server.app.inject({ method: 'POST', url: '/v1/models/mlp/versions', headers: server.auth, payload: untasked });
    expect(noTask.json()).toMatchObject({ code: 'EF_SCHEMA_INVALID', detail: expect.stringContaining('needs its "evaluationTask"') });
  });

  it('refuses a rollout of a version that fails the promotion policy, naming the metric, its value and the threshold', async () => {
    const rollout = (version: string, extra: object = {}) =>
      server.app.inject({
        method: 'POST',
        url: '/v1/rollouts',
        headers: server.auth,
        payload: { model: 'mlp', version, selector: { all: true }, stages: [{ percent: 100 }], ...extra },
      });
    // Without a policy, nothing is judged (no device here: the engine's own refusal comes next).
    expect((await rollout('1.1.0')).json().code).toBe('EF_ROLLOUT_NO_DEVICES');
    const set = await server.app.inject({
      method: 'PUT',
      url: '/v1/models/mlp/policy',
      headers: server.auth,
      payload: { minimums: { accuracy: 0.8, macroF1: 0.5 }, maxRegression: { accuracy: 0.02 } },
    });
    expect(set.statusCode, set.body).toBe(200);
    // 1.1.0 was evaluated on the .npz only: its accuracy there is judged.
    const refused = await rollout('1.1.0');
    expect(refused.statusCode).toBe(422);
    const problem = refused.json();
    expect(problem.code).toBe('EF_POLICY_FAILED');
    expect(problem.detail).toMatch(
      /^EF_POLICY_FAILED: mlp@1\.1\.0 fails the promotion policy: accuracy 0\.\d+ < minimum 0\.8 \(ev-[0-9a-f]{8}\)/,
    );
    expect(problem.details.failures).toEqual([
      expect.objectContaining({ metric: 'accuracy', kind: 'minimum', value: expect.any(Number), threshold: 0.8 }),
      expect.objectContaining({ metric: 'macroF1', kind: 'minimum', value: expect.any(Number), threshold: 0.5 }),
    ]);
    const verdict = (await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions/1.1.0/verdict', headers: server.auth })).json();
    expect(verdict).toMatchObject({
      passes: false,
      champion: null,
      evaluations: [expect.stringMatching(/^ev-/)],
      failures: expect.arrayContaining([expect.objectContaining({ metric: 'accuracy', kind: 'minimum', threshold: 0.8 })]),
    });
    // An explicit override gets past the policy (and then meets the engine's own checks).
    const overridden = await rollout('1.1.0', { policyOverride: { reason: 'hotfix for a crash, accuracy checked by hand' } });
    expect(overridden.json().code).toBe('EF_ROLLOUT_NO_DEVICES');
    const cleared = await server.app.inject({ method: 'DELETE', url: '/v1/models/mlp/policy', headers: server.auth });
    expect(cleared.statusCode).toBe(204);
    expect((await server.app.inject({ method: 'GET', url: '/v1/models/mlp/policy', headers: server.auth })).json()).toMatchObject({
      policy: null,
    });
  });
});
