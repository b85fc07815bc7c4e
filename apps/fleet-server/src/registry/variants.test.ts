/**
 * Variants at registration, through the API on a real server with real onnxruntime sessions: an
 * int8 variant quantized by the server or uploaded, measured against the model on its golden
 * inputs, listed in the signed manifest, downloadable by hash, evaluated beside the reference.
 */
import { createTrust, encodeTensor, type ManifestVariant, verifyManifest } from '@edgefleet/protocol';
import { heavyMlpModel, identityModel, mlpModel, quantizedMlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
}, 60_000);
afterAll(async () => {
  await server.close();
});

const float = mlpModel(7);
const input = seededValues(8, 2026);
const samples = [[encodeTensor('features', 'float32', [2, 4], input)]];

function upload(version: string, fields: Record<string, unknown>, variants: Record<string, Uint8Array> = {}, model = float.bytes) {
  const form = uploadForm(version, model, fields);
  for (const [name, bytes] of Object.entries(variants)) form.append(`variant.${name}`, new Blob([bytes.slice()]), `${name}.onnx`);
  return server.app.inject({ method: 'POST', url: '/v1/models/mlp/versions', headers: server.auth, payload: form });
}

async function finished(id: string) {
  for (;;) {
    const body = (await server.app.inject({ method: 'GET', url: `/v1/evaluations/${id}`, headers: server.auth })).json();
    if (body.status === 'succeeded' || body.status === 'failed') return body;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('variants at registration', () => {
  it('quantizes the model to int8 on request, measures it on the golden inputs and signs it into the manifest', async () => {
    const response = await upload('1.0.0', { sampleInputs: samples, quantize: 'int8' });
    expect(response.statusCode, response.body).toBe(201);
    const body = response.json();
    const keySet = (await server.app.inject({ method: 'GET', url: '/v1/keyset' })).json();
    const manifest = verifyManifest(body.manifest, createTrust(keySet.payload));
    const [variant] = manifest.variants as ManifestVariant[];
    expect(variant).toMatchObject({
      name: 'int8',
      precision: 'int8',
      executionProviders: ['wasm', 'cpu'],
      mediaType: 'application/x-onnx',
    });
    const [report] = body.variants;
    expect(report).toMatchObject({ name: 'int8', source: 'quantized', quantized: { layers: 1, weights: 12, skipped: 0 } });
    // The measured error: the int8 build against the float reference, about 1e-2 for these weights.
    expect(report.maxAbsoluteError).toBeGreaterThan(0);
    expect(report.maxAbsoluteError).toBeLessThan(0.02);
    // Its tolerance leaves headroom over what was measured, on top of the model's own.
    expect(variant?.tolerance.absolute).toBeCloseTo(1e-4 + report.maxAbsoluteError * 1.5, 10);

    // Devices fetch it by hash, like the model.
    const file = await server.app.inject({ method: 'GET', url: `/v1/artifacts/${variant?.sha256}`, headers: server.auth });
    expect(file.statusCode).toBe(200);
    expect(file.rawPayload.length).toBe(variant?.size);

    const record = (await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions/1.0.0', headers: server.auth })).json();
    expect(record.variants).toEqual([
      expect.objectContaining({
        name: 'int8',
        precision: 'int8',
        source: 'quantized',
        maxAbsoluteError: report.maxAbsoluteError,
        evaluation: null,
      }),
    ]);
  });

  it('takes uploaded variants with their settings, and refuses one that does not fit the model with EF_VARIANT_INVALID', async () => {
    const int8 = quantizedMlpModel(7).bytes;
    const ok = await upload('1.1.0', { sampleInputs: samples, variants: { q8: { executionProviders: ['wasm'] } } }, { q8: int8 });
    expect(ok.statusCode, ok.body).toBe(201);
    expect(ok.json().manifest.payload.variants).toEqual([
      expect.objectContaining({ name: 'q8', precision: 'int8', executionProviders: ['wasm'], size: int8.length }),
    ]);

    const cases: [string, Record<string, unknown>, Record<string, Uint8Array>, RegExp][] = [
      // Another signature (an identity [1, 4] → [1, 4] model: other names).
      ['2.0.0', { sampleInputs: samples }, { other: identityModel().bytes }, /its inputs are x float32; the model's are features float32/],
      // A tolerance the build does not meet on the golden inputs.
      [
        '2.0.1',
        { sampleInputs: samples, variants: { q8: { tolerance: { absolute: 1e-7, relative: 0 } } } },
        { q8: int8 },
        /over its tolerance/,
      ],
      // Other weights: another model, not a build of this one.
      ['2.0.5', { sampleInputs: samples }, { other: mlpModel(8).bytes }, /not the same model in another precision/],
      // Settings for a variant that never came; a reserved name; the same name twice.
      ['2.0.2', { variants: { missing: {} } }, {}, /settings for "missing" but no part "variant.missing"/],
      ['2.0.3', {}, { reference: int8 }, /not a variant name/],
      ['2.0.4', { quantize: 'int8' }, { int8 }, /both name variant "int8"/],
    ];
    for (const [version, fields, variants, message] of cases) {
      const refused = await upload(version, fields, variants);
      expect(refused.statusCode, refused.body).toBe(400);
      expect(refused.json()).toMatchObject({ code: 'EF_VARIANT_INVALID', detail: expect.stringMatching(message) });
    }
    // Nothing of a refused upload stayed.
    const list = (await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions?limit=50', headers: server.auth })).json();
    expect(list.versions.map((v: { version: string }) => v.version).sort()).toEqual(['1.0.0', '1.1.0']);
  });

  it('evaluates each variant beside the reference on the same data, with its accuracy delta', async () => {
    const wide = heavyMlpModel(64, 2, 3);
    const response = await upload('3.0.0', { quantize: 'int8' }, {}, wide.bytes);
    expect(response.statusCode, response.body).toBe(201);
    expect(response.json().variants[0]).toMatchObject({ sizeRatio: expect.any(Number) });
    expect(response.json().variants[0].sizeRatio).toBeLessThan(0.4);
    const rows = Array.from({ length: 200 }, (_, i) => seededValues(4, 500 + i, 2));
    const labels = rows.map((x) => {
      const s = wide.reference(x);
      return s.indexOf(Math.max(...s));
    });
    const csv = `a,b,c,d,label\n${rows.map((x, i) => `${[...x].join(',')},${labels[i]}`).join('\n')}\n`;
    const form = new FormData();
    form.append('dataset', new Blob([csv]), 'held-out.csv');
    form.append('task', JSON.stringify({ kind: 'classification' }));
    const queued = await server.app.inject({
      method: 'POST',
      url: '/v1/models/mlp/versions/3.0.0/evaluations',
      headers: server.auth,
      payload: form,
    });
    expect(queued.statusCode, queued.body).toBe(202);
    const list = (
      await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions/3.0.0/evaluations', headers: server.auth })
    ).json();
    expect(list.evaluations.map((e: { variant: string }) => e.variant).sort()).toEqual(['int8', 'reference']);
    const done = await Promise.all(list.evaluations.map((e: { id: string }) => finished(e.id)));
    const [reference, int8] = ['reference', 'int8'].map((v) => done.find((e) => e.variant === v));
    expect(reference.metrics.accuracy).toBe(1); // the labels are the float model's own answers
    const record = (await server.app.inject({ method: 'GET', url: '/v1/models/mlp/versions/3.0.0', headers: server.auth })).json();
    expect(record.evaluation.id).toBe(reference.id); // the version's own evaluation is the reference's
    expect(record.variants[0].evaluation).toMatchObject({ id: int8.id, delta: { accuracy: int8.metrics.accuracy - 1 } });
    expect(int8.metrics.accuracy).toBeGreaterThan(0.9);
  });
});
