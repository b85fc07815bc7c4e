import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createTrust, decodeGoldenVectors, decodeTensor, encodeTensor, type TensorData, verifyManifest } from '@edgefleet/protocol';
import { buildOnnxModel, mlpModel, readModel, SILERO_VAD_V5_PATH, seededValues, sha256Hex } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../store/db.ts';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const silero = readModel(SILERO_VAD_V5_PATH);
const execFileAsync = promisify(execFile);

async function upload(name: string, version: string, model: Uint8Array, fields: Record<string, unknown> = {}) {
  return server.app.inject({
    method: 'POST',
    url: `/v1/models/${name}/versions`,
    headers: server.auth,
    payload: uploadForm(version, model, fields),
  });
}

describe('model registry', () => {
  it('registers Silero VAD: parses it, stores it by hash and issues a manifest devices verify', async () => {
    const response = await upload('silero-vad', '5.0.0', silero, { metadata: { 'source.package': '@ricky0123/vad-web' } });
    expect(response.statusCode, response.body).toBe(201);
    const body = response.json();
    expect(body).toMatchObject({ name: 'silero-vad', version: '5.0.0', sha256: sha256Hex(silero), size: silero.length });
    const keySet = (await server.app.inject({ method: 'GET', url: '/v1/keyset' })).json();
    const manifest = verifyManifest(body.manifest, createTrust(keySet.payload));
    expect(manifest.model.inputs.map((i) => i.name)).toEqual(['input', 'state', 'sr']);
    expect(manifest.metadata).toEqual({ 'source.package': '@ricky0123/vad-web' });
    const list = (await server.app.inject({ method: 'GET', url: '/v1/models', headers: server.auth })).json();
    expect(list.models).toContainEqual(expect.objectContaining({ name: 'silero-vad', versions: 1 }));
  });

  it('computes golden vectors from sample inputs with onnxruntime-web', async () => {
    const model = mlpModel(3);
    const input = seededValues(8, 1);
    const response = await upload('mlp', '1.0.0', model.bytes, {
      sampleInputs: [[encodeTensor('features', 'float32', [2, 4], input)]],
      tolerance: { absolute: 1e-5, relative: 0 },
    });
    expect(response.statusCode, response.body).toBe(201);
    const manifest = response.json().manifest.payload;
    // They travel as a file the manifest lists by hash, served to devices like the model.
    expect(manifest.acceptance).toEqual({ tolerance: { absolute: 1e-5, relative: 0 }, vectors: [], vectorsFile: 'golden-vectors.json' });
    const [file] = manifest.files;
    const served = await server.app.inject({ method: 'GET', url: `/v1/artifacts/${file.sha256}`, headers: server.auth });
    expect(served.statusCode).toBe(200);
    expect(sha256Hex(served.rawPayload)).toBe(file.sha256);
    expect(served.rawPayload.length).toBe(file.size);
    const vectors = decodeGoldenVectors(served.rawPayload, manifest);
    expect(vectors).toHaveLength(1);
    expect(vectors[0]?.outputs[0]).toMatchObject({ name: 'scores', dtype: 'float32', shape: [2, 3] });
    const scores = decodeTensor(vectors[0]?.outputs[0] as TensorData).data as Float32Array;
    const expected = model.reference(input);
    for (const [i, value] of scores.entries()) expect(value).toBeCloseTo(expected[i] as number, 5);
  });

  it('refuses a version whose manifest could not travel to devices (EF_MANIFEST_TOO_LARGE), naming the large part, and keeps nothing', async () => {
    const metadata = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`note-${i}`, 'x'.repeat(1000)]));
    const response = await upload('verbose', '1.0.0', mlpModel(3).bytes, { metadata });
    expect(response.statusCode).toBe(422);
    expect(response.json()).toMatchObject({ code: 'EF_MANIFEST_TOO_LARGE' });
    expect(response.json().detail).toMatch(/largest part is metadata/);
    expect((await server.app.inject({ method: 'GET', url: '/v1/models/verbose/versions', headers: server.auth })).statusCode).toBe(404);
  });

  it('refuses to republish a version (versions are immutable)', async () => {
    const model = mlpModel(4).bytes;
    expect((await upload('immutable', '1.0.0', model)).statusCode).toBe(201);
    const again = await upload('immutable', '1.0.0', mlpModel(5).bytes);
    expect(again.statusCode).toBe(409);
    expect(again.headers['content-type']).toContain('application/problem+json');
    expect(again.json()).toMatchObject({ code: 'EF_MODEL_VERSION_EXISTS', status: 409 });
  });

  it.each([
    ['random bytes', Uint8Array.from({ length: 4000 }, (_, i) => (i * 197 + 3) % 256), 'EF_ONNX_INVALID'],
    ['a truncated model', silero.subarray(0, 50_000), 'EF_ONNX_INVALID'],
  ])('refuses %s with a coded 4xx and keeps nothing', async (_name, bytes, code) => {
    const response = await upload('broken', '1.0.0', bytes);
    expect(response.statusCode).toBe(422);
    expect(response.json().code).toBe(code);
    const versions = await server.app.inject({ method: 'GET', url: '/v1/models/broken/versions', headers: server.auth });
    expect(versions.statusCode).toBe(404);
  });

  it('refuses a model with external data (EF_ONNX_EXTERNAL_DATA)', async () => {
    const external = buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: [3] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [3] }],
      initializers: [{ name: 'w', dtype: 'float32', dims: [3], data: new Float32Array(3) }],
      externalData: { w: '/etc/shadow' },
      nodes: [{ op: 'Add', inputs: ['x', 'w'], outputs: ['y'] }],
    });
    const response = await upload('external', '1.0.0', external);
    expect(response.json()).toMatchObject({ code: 'EF_ONNX_EXTERNAL_DATA', status: 422 });
  });

  it('refuses an oversized upload with 413 and leaves no temp file', async () => {
    const small = await startTestServer({ maxModelBytes: 1000 });
    try {
      const response = await small.app.inject({
        method: 'POST',
        url: '/v1/models/big/versions',
        headers: small.auth,
        payload: uploadForm('1.0.0', silero),
      });
      expect(response.statusCode).toBe(413);
      expect(response.json().code).toBe('EF_MESSAGE_TOO_LARGE');
    } finally {
      await small.close();
    }
  });

  it('refuses bad versions, unknown fields and missing credentials with coded errors', async () => {
    expect((await upload('mlp', 'v1', mlpModel(6).bytes)).json().code).toBe('EF_VERSION_INVALID');
    expect((await upload('mlp', '2.0.0', mlpModel(6).bytes, { colour: 'red' })).json().code).toBe('EF_SCHEMA_INVALID');
    const anonymous = await server.app.inject({
      method: 'POST',
      url: '/v1/models/mlp/versions',
      payload: uploadForm('3.0.0', mlpModel(6).bytes),
    });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json().code).toBe('EF_UNAUTHORIZED');
  });

  it('moves aliases between versions and refuses to delete an aliased version', async () => {
    expect((await upload('aliased', '1.0.0', mlpModel(10).bytes)).statusCode).toBe(201);
    expect((await upload('aliased', '1.1.0', mlpModel(11).bytes)).statusCode).toBe(201);
    const set = (version: string) =>
      server.app.inject({ method: 'PUT', url: '/v1/models/aliased/aliases/production', headers: server.auth, payload: { version } });
    expect((await set('1.0.0')).statusCode).toBe(200);
    expect((await set('1.1.0')).json()).toMatchObject({ alias: 'production', version: '1.1.0' });
    const del = await server.app.inject({ method: 'DELETE', url: '/v1/models/aliased/versions/1.1.0', headers: server.auth });
    expect(del.json()).toMatchObject({ code: 'EF_MODEL_VERSION_IN_USE' });
    expect((await server.app.inject({ method: 'DELETE', url: '/v1/models/aliased/versions/1.0.0', headers: server.auth })).statusCode).toBe(
      204,
    );
    const audit = (
      await server.app.inject({ method: 'GET', url: '/v1/audit?target=model:aliased%23production', headers: server.auth })
    ).json();
    expect(audit.entries.map((e: { before: unknown; after: unknown }) => [e.before, e.after])).toEqual([
      [{ version: '1.0.0' }, { version: '1.1.0' }],
      [null, { version: '1.0.0' }],
    ]);
  });

  it('serves artifacts with Range, ETag and immutable caching to admins and devices only', async () => {
    const sha = sha256Hex(silero);
    const anonymous = await server.app.inject({ method: 'GET', url: `/v1/artifacts/${sha}` });
    expect(anonymous.statusCode).toBe(401);
    const whole = await server.app.inject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: server.auth });
    expect(whole.statusCode).toBe(200);
    expect(sha256Hex(whole.rawPayload)).toBe(sha);
    expect(whole.headers.etag).toBe(`"${sha}"`);
    expect(whole.headers['cache-control']).toContain('immutable');
    const part = await server.app.inject({
      method: 'GET',
      url: `/v1/artifacts/${sha}`,
      headers: { ...server.auth, range: 'bytes=100-199' },
    });
    expect(part.statusCode).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 100-199/${silero.length}`);
    expect(Buffer.from(part.rawPayload)).toEqual(Buffer.from(silero.subarray(100, 200)));
    const cached = await server.app.inject({
      method: 'GET',
      url: `/v1/artifacts/${sha}`,
      headers: { ...server.auth, 'if-none-match': `"${sha}"` },
    });
    expect(cached.statusCode).toBe(304);
    const beyond = await server.app.inject({
      method: 'GET',
      url: `/v1/artifacts/${sha}`,
      headers: { ...server.auth, range: `bytes=${silero.length}-` },
    });
    expect(beyond.statusCode).toBe(416);
    expect(beyond.headers['content-range']).toBe(`bytes */${silero.length}`);
    expect(beyond.json()).toMatchObject({ code: 'EF_RANGE_NOT_SATISFIABLE' });
    const device = (
      await server.app.inject({ method: 'POST', url: '/v1/devices', headers: server.auth, payload: { id: 'downloader' } })
    ).json();
    // A device reads the artifacts of versions assigned to it.
    await server.app.inject({
      method: 'PUT',
      url: '/v1/devices/downloader/desired/silero-vad',
      headers: server.auth,
      payload: { version: '5.0.0' },
    });
    const basic = `Basic ${Buffer.from(`downloader:${device.secret}`).toString('base64')}`;
    expect((await server.app.inject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: { authorization: basic } })).statusCode).toBe(
      200,
    );
    const wrong = `Basic ${Buffer.from('downloader:nope').toString('base64')}`;
    expect((await server.app.inject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: { authorization: wrong } })).json().code).toBe(
      'EF_UNAUTHORIZED',
    );
  });

  it('refuses to serve an artifact whose stored bytes no longer match its hash', async () => {
    const model = mlpModel(99).bytes;
    expect((await upload('rots', '1.0.0', model)).statusCode).toBe(201);
    const sha = sha256Hex(model);
    const flip = (bytes: Buffer) => {
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1;
      return bytes;
    };
    if (server.config.artifacts === 'database') {
      // Rotted in the database: the same check applies to whatever keeps the bytes.
      const store = await openDatabase({ dataDir: server.config.dataDir, databaseUrl: server.config.databaseUrl });
      const chunk = await store.db
        .selectFrom('artifact_chunks')
        .select('bytes')
        .where('sha256', '=', sha)
        .where('seq', '=', 0)
        .executeTakeFirstOrThrow();
      await store.db
        .updateTable('artifact_chunks')
        .set({ bytes: flip(Buffer.from(chunk.bytes)) })
        .where('sha256', '=', sha)
        .where('seq', '=', 0)
        .execute();
      await store.close();
    } else {
      const path = join(server.config.dataDir, 'artifacts', sha);
      await writeFile(path, flip(await readFile(path)));
    }
    const response = await server.app.inject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: server.auth });
    expect(response.statusCode).toBe(502);
    expect(response.json()).toMatchObject({ code: 'EF_ARTIFACT_HASH_MISMATCH' });
  });
});

describe('multipart field order', () => {
  it('takes the parts in any order: the reference dataset before its telemetry spec, the model before its version', async () => {
    const telemetry = {
      features: [
        { name: 'a', source: 'input', tensor: 'features', kind: 'column', index: 0 },
        { name: 'b', source: 'input', tensor: 'features', kind: 'column', index: 1 },
      ],
    };
    const rows = Array.from({ length: 50 }, (_, i) => `${i % 7},${(i * 3) % 11}`).join('\n');
    const form = new FormData();
    form.append('reference', new Blob([`a,b\n${rows}\n`], { type: 'text/csv' }), 'reference.csv');
    form.append('model', new Blob([mlpModel(21).bytes.slice()]), 'model.onnx');
    form.append('telemetry', JSON.stringify(telemetry));
    form.append('version', '1.0.0');
    const response = await server.app.inject({ method: 'POST', url: '/v1/models/any-order/versions', headers: server.auth, payload: form });
    expect(response.statusCode, response.body).toBe(201);
    expect(response.json()).toMatchObject({ version: '1.0.0', reference: { rows: 50, features: ['a', 'b'] } });
    expect(response.json().manifest.payload.telemetry).toEqual(telemetry);
  });
});

describe('golden vectors and sample inputs from curl (docs/fleet-server.md)', () => {
  it('registers a version with curl -F, the sample inputs a JSON file of base64url tensors, and signs their outputs as golden vectors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-curl-'));
    const fixture = mlpModel(22);
    await writeFile(join(dir, 'model.onnx'), fixture.bytes);
    // As the docs write it: float32 little-endian bytes, base64url without padding.
    const row = Float32Array.from([0.5, -1, 2, 0.25]);
    const data = Buffer.from(row.buffer).toString('base64url');
    await writeFile(join(dir, 'samples.json'), JSON.stringify([[{ name: 'features', dtype: 'float32', shape: [1, 4], data }]]));
    const { stdout } = await execFileAsync(
      'curl',
      [
        '-sS',
        '-H',
        `Authorization: Bearer ${server.token}`,
        '-F',
        'sampleInputs=@samples.json',
        '-F',
        'model=@model.onnx',
        '-F',
        'version=1.0.0',
        `${server.url}/v1/models/from-curl/versions`,
      ],
      { cwd: dir },
    );
    const created = JSON.parse(stdout);
    expect(created).toMatchObject({ name: 'from-curl', version: '1.0.0' });
    const file = created.manifest.payload.files.find((f: { role: string }) => f.role === 'golden-vectors');
    const vectors = decodeGoldenVectors(
      new Uint8Array(await (await fetch(`${server.url}/v1/artifacts/${file.sha256}`, { headers: server.auth })).arrayBuffer()),
      created.manifest.payload,
    );
    const output = decodeTensor(vectors[0]?.outputs[0] as TensorData).data as Float32Array;
    const expected = fixture.reference(row);
    for (let i = 0; i < expected.length; i++) expect(output[i]).toBeCloseTo(expected[i] as number, 5);
  });
});
