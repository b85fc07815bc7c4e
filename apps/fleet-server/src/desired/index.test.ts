import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MLP_INPUTS, MLP_OUTPUTS, manifestFor, mlpModel } from '@edgefleet/test-utils';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FleetBroker } from '../broker/index.ts';
import { loadOrCreateKeys } from '../keys/index.ts';
import { type OpenedDatabase, openDatabase } from '../store/db.ts';
import { createDesiredStateService } from './index.ts';

describe('desired state service', () => {
  let store: OpenedDatabase;
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-desired-'));
    store = await openDatabase({ dataDir });
  });
  afterEach(() => store.close());

  it('publishes again, from the store, a document whose publish failed, without writing a new one', async () => {
    const keys = await loadOrCreateKeys(dataDir);
    const model = mlpModel(1);
    const manifest = manifestFor({
      name: 'mlp',
      version: '1.0.0',
      bytes: model.bytes,
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      key: keys.signing,
    });
    const at = new Date().toISOString();
    await store.db.insertInto('models').values({ name: 'mlp', created_at: at }).execute();
    await store.db
      .insertInto('model_versions')
      .values({
        name: 'mlp',
        version: '1.0.0',
        sha256: manifest.payload.artifact.sha256,
        size: model.bytes.length,
        manifest: JSON.stringify(manifest),
        metadata: '{}',
        created_at: at,
        created_by: 'test',
      })
      .execute();
    await store.db
      .insertInto('devices')
      .values({
        id: 'dev-1',
        secret_hash: 'x',
        tags: '[]',
        status: 'active',
        created_at: at,
        last_seen_at: null,
        online: 0,
        reported: null,
      })
      .execute();
    // A broker that refuses the first publish (a hiccup), then delivers.
    const published: { topic: string; payload: string }[] = [];
    let failures = 1;
    const broker = {
      async publish(topic: string, payload: Uint8Array | string) {
        if (failures-- > 0) throw new Error('broker unavailable');
        published.push({ topic, payload: typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8') });
      },
    } as unknown as FleetBroker;
    const warnings: string[] = [];
    const desired = createDesiredStateService({
      db: store.db,
      keys,
      broker: () => broker,
      topic: (id) => `edgefleet/v1/devices/${id}/desired`,
      manifestTtlMs: 90 * 24 * 3600 * 1000,
      retryPublishMs: 10,
      log: { warn: (_obj, msg) => warnings.push(msg) },
    });
    const result = await desired.assignMany(['dev-1'], { set: [{ name: 'mlp', version: '1.0.0' }] }, 'test', 'test');
    expect(result.written).toEqual(['dev-1']);
    expect(warnings).toHaveLength(1);
    // The witness: the same document (sequence 1) arrives once the retry has run.
    const deadline = Date.now() + 5000;
    while (published.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(published).toHaveLength(1);
    expect(JSON.parse(published[0]?.payload ?? '{}').payload.sequence).toBe(1);
    expect((await desired.current('dev-1'))?.payload.sequence).toBe(1);
    desired.stop();
  });
});
