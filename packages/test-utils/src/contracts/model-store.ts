/**
 * The contract every ModelStore of @edgefleet/runtime passes (file system, IndexedDB in Node and
 * in Chromium). Each implementation's test calls `describeModelStoreContract` with a factory that
 * opens the same storage again, so persistence across a "restart" is part of the contract.
 *
 * The store is typed by what the contract exercises (the runtime's ModelStore fits it): this
 * package cannot depend on the packages whose tests depend on it.
 */
import { createManifest, generateSigningKey, type ManifestPayload, type SignedDocument, signManifest } from '@edgefleet/protocol';
import { describe, expect, it } from 'vitest';
import { sha256Hex as hashOf } from '../fixtures/index.ts';

interface InstalledVersion {
  readonly version: string;
  readonly sha256: string;
  readonly manifest: SignedDocument<ManifestPayload>;
  readonly files: Readonly<Record<string, string>>;
  readonly executionProvider: 'webgpu' | 'wasm' | 'cpu';
  readonly activatedAt: string;
  readonly providers?: readonly {
    readonly executionProvider: string;
    readonly engine: string;
    readonly passed: boolean;
    readonly p50Ms?: number;
  }[];
  readonly providerFingerprint?: string;
}

interface ModelRecord {
  readonly name: string;
  readonly active?: InstalledVersion;
  readonly previous?: InstalledVersion;
  readonly floor?: { readonly version: string; readonly keyIds: readonly string[] };
}

/** A model store as the runtime uses it. */
export interface ModelStoreUnderTest {
  hasArtifact(sha256: string): Promise<boolean>;
  createArtifactWriter(
    sha256: string,
  ): Promise<{ write(chunk: Uint8Array): Promise<void>; commit(): Promise<void>; abort(): Promise<void> }>;
  readArtifact(sha256: string): Promise<Uint8Array>;
  deleteArtifact(sha256: string): Promise<void>;
  listArtifacts(): Promise<string[]>;
  readRecords(): Promise<ModelRecord[]>;
  writeRecord(record: ModelRecord): Promise<void>;
  deleteRecord(name: string): Promise<void>;
  close(): Promise<void>;
}

export interface StoreHarness {
  /** Opens the store under test; called again to simulate a restart on the same storage. */
  open(): Promise<ModelStoreUnderTest>;
}

const key = generateSigningKey();

function installed(version: string, bytes: Uint8Array): InstalledVersion {
  const manifest = signManifest(
    createManifest({
      name: 'contract-model',
      version,
      artifact: { sha256: hashOf(bytes), size: bytes.length, mediaType: 'application/x-onnx' },
      files: [],
      model: {
        format: 'onnx',
        irVersion: 8,
        opsets: [{ domain: '', version: 17 }],
        inputs: [{ name: 'x', dtype: 'float32', shape: [1] }],
        outputs: [{ name: 'y', dtype: 'float32', shape: [1] }],
        operators: [],
        quantization: { quantized: false, formats: [] },
      },
      runtime: { executionProviders: ['wasm'] },
    }),
    [key],
  );
  return { version, sha256: hashOf(bytes), manifest, files: {}, executionProvider: 'wasm', activatedAt: '2026-06-01T00:00:00Z' };
}

async function put(store: ModelStoreUnderTest, bytes: Uint8Array, chunks = 3): Promise<string> {
  const sha = hashOf(bytes);
  const writer = await store.createArtifactWriter(sha);
  const size = Math.ceil(bytes.length / chunks);
  for (let i = 0; i < bytes.length; i += size) await writer.write(bytes.subarray(i, i + size));
  await writer.commit();
  return sha;
}

export function describeModelStoreContract(name: string, harness: StoreHarness): void {
  describe(`ModelStore contract: ${name}`, () => {
    it('stores an artifact written in chunks and reads back the same bytes after a restart', async () => {
      const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) % 251);
      const store = await harness.open();
      const sha = await put(store, bytes, 7);
      expect(await store.hasArtifact(sha)).toBe(true);
      await store.close();
      const reopened = await harness.open();
      expect(await reopened.readArtifact(sha)).toEqual(bytes);
      expect(await reopened.listArtifacts()).toContain(sha);
      await reopened.close();
    });

    it('shows nothing of an artifact that was aborted or never committed', async () => {
      const store = await harness.open();
      const bytes = Uint8Array.from([1, 2, 3, 4]);
      const sha = hashOf(bytes);
      const aborted = await store.createArtifactWriter(sha);
      await aborted.write(bytes);
      await aborted.abort();
      await aborted.abort(); // twice is fine
      expect(await store.hasArtifact(sha)).toBe(false);
      const unfinished = await store.createArtifactWriter(sha);
      await unfinished.write(bytes);
      await store.close();
      const reopened = await harness.open();
      expect(await reopened.hasArtifact(sha)).toBe(false);
      expect(await reopened.listArtifacts()).not.toContain(sha);
      await reopened.close();
    });

    it('deletes an artifact', async () => {
      const store = await harness.open();
      const sha = await put(store, Uint8Array.from([9, 9, 9]));
      await store.deleteArtifact(sha);
      expect(await store.hasArtifact(sha)).toBe(false);
      await store.close();
    });

    it('replaces a model record whole and keeps it across a restart', async () => {
      const store = await harness.open();
      const one = installed('1.0.0', Uint8Array.from([1]));
      // With how its execution provider was chosen: a store keeps every field of the record.
      const two: InstalledVersion = {
        ...installed('2.0.0', Uint8Array.from([2])),
        providers: [{ executionProvider: 'wasm', engine: 'onnxruntime-web', passed: true, p50Ms: 0.25 }],
        providerFingerprint: 'onnxruntime-web:wasm:available',
      };
      const first: ModelRecord = { name: 'contract-model', active: one, floor: { version: '1.0.0', keyIds: [key.keyId] } };
      const second: ModelRecord = { name: 'contract-model', active: two, previous: one, floor: { version: '2.0.0', keyIds: [key.keyId] } };
      await store.writeRecord(first);
      await store.writeRecord(second);
      await store.close();
      const reopened = await harness.open();
      expect(await reopened.readRecords()).toEqual([second]);
      await reopened.deleteRecord('contract-model');
      expect(await reopened.readRecords()).toEqual([]);
      await reopened.close();
    });

    it('keeps one record per model', async () => {
      const store = await harness.open();
      await store.writeRecord({ name: 'model-a', active: installed('1.0.0', Uint8Array.from([1])) });
      await store.writeRecord({ name: 'model-b', active: installed('3.1.4', Uint8Array.from([3])) });
      const records = await store.readRecords();
      expect(records.map((r) => `${r.name}@${r.active?.version}`).sort()).toEqual(['model-a@1.0.0', 'model-b@3.1.4']);
      await store.close();
    });
  });
}
