import { Readable } from 'node:stream';
import { type CategoricalProfile, fromWire, type NumericProfile } from '@edgefleet/drift';
import type { TelemetrySpec } from '@edgefleet/protocol';
import { mlpModel } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';
import { type DatasetFormat, profileDataset } from './reference-dataset.ts';

/** A tabular model's features: the MLP reads [rows, 4] (age, income, tenure, region code). */
const TABULAR: TelemetrySpec = {
  features: [
    { name: 'age', source: 'input', tensor: 'features', kind: 'column', index: 0 },
    { name: 'income', source: 'input', tensor: 'features', kind: 'column', index: 1 },
    { name: 'tenure', source: 'input', tensor: 'features', kind: 'column', index: 2 },
    { name: 'region', source: 'input', tensor: 'features', kind: 'column', index: 3, type: 'categorical', labels: ['north', 'south'] },
    { name: 'churn', source: 'output', tensor: 'scores', kind: 'class', labels: ['stay', 'churn', 'unsure'] },
  ],
};

const text = (value: string) => Readable.from([Buffer.from(value)]);

async function profile(body: string, format: DatasetFormat, telemetry?: TelemetrySpec, maxBytes = 1 << 20) {
  const result = await profileDataset(text(body), { format, maxBytes, ...(telemetry ? { telemetry } : {}) });
  return { rows: result.rows, features: new Map(result.features.map((f) => [f.name, fromWire(f.profile)])) };
}

async function refusal(body: string, format: DatasetFormat, telemetry?: TelemetrySpec, maxBytes = 1 << 20) {
  return profile(body, format, telemetry, maxBytes).then(
    () => undefined,
    (error: { code?: string; message?: string }) => ({ code: error.code, message: error.message }),
  );
}

describe('reference datasets', () => {
  it('profiles a CSV column by column as devices profile the same features (quotes, CRLF, a BOM, missing cells)', async () => {
    const csv = '\uFEFFage,income,region,churn\r\n31,"52,000.5",1,churn\r\n58,41000,north,stay\r\n,39000,0,1\r\n';
    const { rows, features } = await profile(csv.replace('"52,000.5"', '52000.5'), 'csv', TABULAR);
    expect(rows).toBe(3);
    const age = features.get('age') as NumericProfile;
    expect([age.moments.count, age.moments.missing, age.moments.mean]).toEqual([2, 1, 44.5]);
    expect((features.get('income') as NumericProfile).moments.max).toBe(52000.5);
    // Codes become their labels, as a device's runtime writes them; names stay names.
    expect((features.get('region') as CategoricalProfile).categories.counts).toEqual({ south: 1, north: 2 });
    expect((features.get('churn') as CategoricalProfile).categories.counts).toEqual({ churn: 2, stay: 1 });
    // A quoted cell with a comma is one cell: it is not a number, and the refusal says where.
    expect(await refusal(csv, 'csv', TABULAR)).toEqual({
      code: 'EF_REFERENCE_INVALID',
      message: expect.stringContaining('row 1, column "income": "52,000.5" is not a number, and income is a numeric feature'),
    });
  });

  it('reads JSON lines, and without declared features infers numeric and categorical columns', async () => {
    const lines = ['{"input.mean": 0.1, "output.class": "1"}', '', '{"input.mean": -0.3, "output.class": "0"}', '{"input.mean": null}'];
    const { rows, features } = await profile(lines.join('\n'), 'jsonl');
    expect(rows).toBe(3);
    expect(features.get('input.mean')).toMatchObject({ kind: 'numeric', moments: { count: 2, missing: 1 } });
    expect(features.get('output.class')).toMatchObject({ kind: 'categorical', categories: { counts: { 0: 1, 1: 1 } } });
  });

  it('refuses what it cannot profile with EF_REFERENCE_INVALID and a message that says what to fix', async () => {
    expect(await refusal('age,colour\n1,red\n', 'csv', TABULAR)).toMatchObject({
      code: 'EF_REFERENCE_INVALID',
      message: expect.stringContaining('column "colour" is not a telemetry feature of this model; its features are age, income'),
    });
    expect(await refusal('age,income\n1,2\n3\n', 'csv')).toMatchObject({
      code: 'EF_REFERENCE_INVALID',
      message: expect.stringContaining('CSV'),
    });
    expect(await refusal('{"age": 1}\n{"age": 2\n', 'jsonl')).toEqual({
      code: 'EF_REFERENCE_INVALID',
      message: expect.stringContaining('line 2 is not JSON: {"age": 2'),
    });
    expect(await refusal('[1, 2]\n', 'jsonl')).toMatchObject({ code: 'EF_REFERENCE_INVALID', message: expect.stringContaining('line 1') });
    expect(await refusal('age,income\n', 'csv')).toMatchObject({
      code: 'EF_REFERENCE_INVALID',
      message: expect.stringContaining('the reference dataset has no rows'),
    });
    expect(await refusal(`age\n${'1\n'.repeat(1000)}`, 'csv', undefined, 1000)).toMatchObject({ code: 'EF_MESSAGE_TOO_LARGE' });
  });
});

describe('reference dataset uploaded with the model', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  const csv = [
    'age,income,tenure,region',
    ...Array.from({ length: 500 }, (_, i) => `${20 + (i % 50)},${30_000 + i * 10},${i % 7},${i % 2}`),
  ].join('\n');

  it('stores the reference with the version, in one upload, and shows it per feature', async () => {
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/models/churn/versions',
      headers: server.auth,
      payload: uploadForm('1.0.0', mlpModel(2).bytes, { telemetry: TABULAR }, { fileName: 'reference.csv', text: csv }),
    });
    expect(response.statusCode, response.body).toBe(201);
    expect(response.json().reference).toEqual({ rows: 500, features: ['age', 'income', 'tenure', 'region'] });
    expect(response.json().manifest.payload.telemetry).toEqual(TABULAR);
    const reference = (
      await server.app.inject({ method: 'GET', url: '/v1/models/churn/versions/1.0.0/reference', headers: server.auth })
    ).json();
    expect(reference).toMatchObject({ source: 'dataset reference.csv (500 rows)', runs: 500 });
    const age = reference.features.find((f: { name: string }) => f.name === 'age');
    expect(age).toMatchObject({ kind: 'numeric', count: 500, min: 20, max: 69 });
    expect(age.mean).toBeCloseTo(44.5, 9);
    expect(reference.features.find((f: { name: string }) => f.name === 'region').categories).toEqual({ north: 250, south: 250 });
  });

  it('refuses an upload whose dataset does not fit, and stores no version', async () => {
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/models/churn/versions',
      headers: server.auth,
      payload: uploadForm('1.1.0', mlpModel(2).bytes, { telemetry: TABULAR }, { fileName: 'reference.csv', text: 'age,height\n1,2\n' }),
    });
    expect(response.statusCode).toBe(422);
    expect(response.json()).toMatchObject({ code: 'EF_REFERENCE_INVALID' });
    const versions = (await server.app.inject({ method: 'GET', url: '/v1/models/churn/versions', headers: server.auth })).json();
    expect(versions.versions.map((v: { version: string }) => v.version)).toEqual(['1.0.0']);
    const unknownFormat = await server.app.inject({
      method: 'POST',
      url: '/v1/models/churn/versions',
      headers: server.auth,
      payload: uploadForm('1.1.0', mlpModel(2).bytes, {}, { fileName: 'reference.parquet', text: 'PAR1' }),
    });
    expect(unknownFormat.json()).toMatchObject({ code: 'EF_REFERENCE_INVALID', detail: expect.stringContaining('neither CSV') });
  });

  it('replaces the reference with a JSON lines dataset PUT later', async () => {
    const body = Array.from({ length: 40 }, (_, i) => JSON.stringify({ age: 70 + i, region: 'south' })).join('\n');
    const put = await server.app.inject({
      method: 'PUT',
      url: '/v1/models/churn/versions/1.0.0/reference',
      headers: { ...server.auth, 'content-type': 'application/x-ndjson' },
      payload: body,
    });
    expect(put.statusCode, put.body).toBe(201);
    expect(put.json()).toEqual({ model: 'churn', version: '1.0.0', rows: 40, features: ['age', 'region'] });
    const reference = (
      await server.app.inject({ method: 'GET', url: '/v1/models/churn/versions/1.0.0/reference', headers: server.auth })
    ).json();
    expect(reference.features.find((f: { name: string }) => f.name === 'age')).toMatchObject({ count: 40, min: 70, max: 109 });
    const missing = await server.app.inject({
      method: 'PUT',
      url: '/v1/models/churn/versions/9.9.9/reference',
      headers: { ...server.auth, 'content-type': 'text/csv' },
      payload: 'age\n1\n',
    });
    expect(missing.json()).toMatchObject({ code: 'EF_NOT_FOUND' });
  });
});
