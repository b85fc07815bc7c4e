import type { ExecutionProvider, ManifestPayload, ProviderMeasurement, SignedDocument } from '@edgefleet/protocol';

/** One installed version of a model as the store records it. */
export interface InstalledVersion {
  readonly version: string;
  /** The artifact that serves: the manifest's own, or the chosen variant's. */
  readonly sha256: string;
  /** The variant that serves; absent: the reference (records written before variants too). */
  readonly variant?: string;
  /** The signed manifest it was installed from (kept so a device can prove what it runs). */
  readonly manifest: SignedDocument<ManifestPayload>;
  /** Content hashes of the manifest's other files, by file name. */
  readonly files: Readonly<Record<string, string>>;
  readonly executionProvider: ExecutionProvider;
  readonly activatedAt: string;
  /** How the execution provider was chosen: each candidate's acceptance verdict and measured p50. */
  readonly providers?: readonly ProviderMeasurement[];
  /**
   * What the device offered when the choice was made (engines, providers, adapters): a restore
   * re-decides only when it changed. Absent in records written before choices were measured.
   */
  readonly providerFingerprint?: string;
}

/** The version floor: nothing older installs without a signed rollback (TUF rollback attack). */
export interface VersionFloor {
  readonly version: string;
  /** Keys that signed the manifest which raised the floor; a rotation that revokes them resets it. */
  readonly keyIds: readonly string[];
}

/** Everything the runtime persists about one model. Written whole, atomically. */
export interface ModelRecord {
  readonly name: string;
  readonly active?: InstalledVersion;
  readonly previous?: InstalledVersion;
  /** A candidate installed to run in shadow beside the active version, and the share of inputs it sees. */
  readonly shadow?: { readonly version: InstalledVersion; readonly rate: number };
  readonly floor?: VersionFloor;
}

/** Receives an artifact's bytes; nothing is visible under the hash until commit(). */
export interface ArtifactWriter {
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the bytes readable under their hash, durably. Call only after verifying the hash. */
  commit(): Promise<void>;
  /** Drops what was written; safe to call after a failure or twice. */
  abort(): Promise<void>;
}

/**
 * Where a device keeps models: artifacts by content hash, and one record per model holding the
 * active/previous pointers and the version floor.
 *
 * Implementations must make `writeRecord` atomic: after a crash at any moment, `readRecords`
 * returns either the old record or the new one, never a mix or nothing. Storage errors surface as
 * EdgefleetError EF_STORE_FULL / EF_STORE_UNAVAILABLE.
 */
export interface ModelStore {
  /** A short name for logs and `models()`: "fs:/var/lib/app/models", "indexeddb:edgefleet". */
  readonly description: string;
  hasArtifact(sha256: string): Promise<boolean>;
  createArtifactWriter(sha256: string): Promise<ArtifactWriter>;
  readArtifact(sha256: string): Promise<Uint8Array>;
  deleteArtifact(sha256: string): Promise<void>;
  listArtifacts(): Promise<string[]>;
  readRecords(): Promise<ModelRecord[]>;
  writeRecord(record: ModelRecord): Promise<void>;
  deleteRecord(name: string): Promise<void>;
  close(): Promise<void>;
}
