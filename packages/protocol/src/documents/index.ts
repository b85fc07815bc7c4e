/**
 * (About 480 lines: the three documents share their validity, signature and consistency checks.)
 *
 * Building, signing and verifying the three signed documents: key sets, model manifests and
 * desired-state documents. Verification is the whole check a device makes before trusting a
 * document: schema, signatures against the role's keys and threshold, validity window, and the
 * document's internal consistency.
 */
import { PROTOCOL_DEFAULTS } from '../defaults.ts';
import { utf8Encode } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';
import {
  DesiredStatePayload,
  DOCUMENT_TYPES,
  type GoldenVector,
  KEY_ROLES,
  type KeyRole,
  KeySetPayload,
  ManifestPayload,
  type PublicKeyEntry,
  SignedDesiredState,
  type SignedDocument,
  SignedKeySet,
  SignedManifest,
  type TensorSpec,
} from '../schemas/index.ts';
import { compareSemver } from '../semver/index.ts';
import {
  decodePublicKey,
  type Ed25519Verify,
  publicKeyEntry,
  type RolePolicy,
  type SigningKey,
  signPayload,
  verifySignatures,
} from '../signing/index.ts';
import { checkTensorAgainstSpec, decodeTensor, findSharedDimensionMismatch } from '../tensor/index.ts';
import { validate } from '../validation/index.ts';

/** How far ahead of the verifier's clock a document may have been issued (clock drift between hosts). */
export const DEFAULT_CLOCK_SKEW_MS = PROTOCOL_DEFAULTS.clockSkewMs;

export interface VerifyOptions {
  /** The verifier's clock in ms since the epoch (inject for tests and for devices with a trusted time source). */
  readonly now?: number;
  readonly clockSkewMs?: number;
}

/** A validated key set, ready to answer "which keys, how many" for each role. */
export interface Trust {
  readonly keySet: KeySetPayload;
  policy(role: KeyRole): RolePolicy;
}

export interface TrustOptions {
  /** The ed25519 check; default pure JavaScript. `@edgefleet/protocol/node` offers Node's native one. */
  readonly verify?: Ed25519Verify;
}

/** Validates a key set (schema, key ids, role references, thresholds) and returns it as a Trust. */
export function createTrust(keySet: unknown, options: TrustOptions = {}): Trust {
  const payload = validate(KeySetPayload, keySet);
  const keys = new Map<string, Uint8Array>();
  for (const entry of payload.keys) {
    if (keys.has(entry.keyId)) throw new EdgefleetError('EF_KEYSET_INVALID', `key ${entry.keyId.slice(0, 16)}… is listed twice`);
    keys.set(entry.keyId, decodePublicKey(entry));
  }
  const policies = new Map<KeyRole, RolePolicy>();
  for (const role of KEY_ROLES) {
    const { keyIds, threshold } = payload.roles[role];
    const missing = keyIds.find((id) => !keys.has(id));
    if (missing)
      throw new EdgefleetError('EF_KEYSET_INVALID', `role ${role} names key ${missing.slice(0, 16)}…, which the key set does not list`);
    if (threshold > keyIds.length) {
      throw new EdgefleetError('EF_KEYSET_INVALID', `role ${role} requires ${threshold} signatures but names only ${keyIds.length} key(s)`);
    }
    policies.set(role, {
      keys: new Map(keyIds.map((id) => [id, keys.get(id) as Uint8Array])),
      threshold,
      verified: new Map(),
      ...(options.verify ? { verify: options.verify } : {}),
    });
  }
  return { keySet: payload, policy: (role) => policies.get(role) as RolePolicy };
}

export interface KeySetInput {
  readonly version: number;
  readonly roles: Readonly<Record<KeyRole, { readonly keys: readonly Pick<SigningKey, 'publicKey'>[]; readonly threshold?: number }>>;
  readonly now?: number;
  /** How long the key set is valid; default one year. */
  readonly ttlMs?: number;
}

/** Builds a key set payload (unsigned). Sign it with the root keys: `signKeySet`. */
export function createKeySet(input: KeySetInput): KeySetPayload {
  const now = input.now ?? Date.now();
  const entries = new Map<string, PublicKeyEntry>();
  const roles = {} as Record<KeyRole, { keyIds: string[]; threshold: number }>;
  for (const role of KEY_ROLES) {
    const spec = input.roles[role];
    const keyIds = spec.keys.map((key) => {
      const entry = publicKeyEntry(key);
      entries.set(entry.keyId, entry);
      return entry.keyId;
    });
    roles[role] = { keyIds: [...new Set(keyIds)], threshold: spec.threshold ?? 1 };
  }
  const payload: KeySetPayload = {
    type: DOCUMENT_TYPES.keySet,
    version: input.version,
    issuedAt: timestamp(now),
    expiresAt: timestamp(now + (input.ttlMs ?? PROTOCOL_DEFAULTS.keySetTtlMs)),
    keys: [...entries.values()],
    roles,
  };
  createTrust(payload);
  return payload;
}

export function signKeySet(payload: KeySetPayload, rootKeys: readonly SigningKey[]): SignedDocument<KeySetPayload> {
  createTrust(payload);
  return signPayload(payload, rootKeys);
}

/**
 * Verifies a key rotation (TUF §5.3.4): the next key set must be newer, unexpired, and signed by a
 * threshold of the current root keys and by a threshold of its own root keys, so neither a stolen
 * old root key nor a forged new one can rotate alone.
 */
export function verifyKeySetUpdate(current: Trust, next: unknown, options: VerifyOptions = {}): Trust {
  const document = validate(SignedKeySet, next);
  const nextTrust = createTrust(document.payload);
  verifySignatures(document, current.policy('root'), 'root');
  verifySignatures(document, nextTrust.policy('root'), 'root');
  if (document.payload.version <= current.keySet.version) {
    throw new EdgefleetError(
      'EF_KEYSET_ROLLBACK',
      `key set version ${document.payload.version} is not above the trusted version ${current.keySet.version}`,
    );
  }
  checkValidityWindow(document.payload, 'key set', options);
  return nextTrust;
}

/**
 * Key ids that signed for `role` under the old key set and no longer may. A device that sees
 * manifest keys revoked drops version floors set by them: this is how a fleet recovers from a
 * compromised key that signed an absurd version (TUF fast-forward attack).
 */
export function revokedKeyIds(previous: Trust, next: Trust, role: KeyRole): string[] {
  const kept = next.policy(role).keys;
  return [...previous.policy(role).keys.keys()].filter((keyId) => !kept.has(keyId));
}

// --- Model manifests ---------------------------------------------------------------------------

export type ManifestInput = Omit<ManifestPayload, 'type' | 'issuedAt' | 'expiresAt'> & {
  readonly now?: number;
  /** How long devices may install from this manifest; default 90 days. */
  readonly ttlMs?: number;
};

/** Builds a manifest payload and checks it as a device would (schema and consistency). */
export function createManifest(input: ManifestInput): ManifestPayload {
  const { now = Date.now(), ttlMs = PROTOCOL_DEFAULTS.manifestTtlMs, ...fields } = input;
  const payload = {
    type: DOCUMENT_TYPES.manifest,
    issuedAt: timestamp(now),
    expiresAt: timestamp(now + ttlMs),
    ...fields,
  } as ManifestPayload;
  checkManifestConsistency(validate(ManifestPayload, payload));
  return payload;
}

export function signManifest(payload: ManifestPayload, keys: readonly SigningKey[]): SignedDocument<ManifestPayload> {
  checkManifestConsistency(validate(ManifestPayload, payload));
  return signPayload(payload, keys);
}

/**
 * Everything a device checks before it downloads a byte: schema, signatures by the manifest role's
 * keys (threshold), validity window, and consistency (names unique, golden vectors fitting the
 * declared inputs and outputs).
 */
export function verifyManifest(document: unknown, trust: Trust, options: VerifyOptions = {}): ManifestPayload {
  return verifyValidManifest(validate(SignedManifest, document), trust, options);
}

/** verifyManifest past the schema check (a desired-state document's schema checked its manifests already). */
function verifyValidManifest(signed: SignedDocument<ManifestPayload>, trust: Trust, options: VerifyOptions): ManifestPayload {
  verifySignatures(signed, trust.policy('manifest'), 'manifest');
  checkValidityWindow(signed.payload, `manifest ${signed.payload.name}@${signed.payload.version}`, options);
  checkManifestConsistency(signed.payload);
  return signed.payload;
}

function checkManifestConsistency(manifest: ManifestPayload): void {
  const what = `manifest ${manifest.name}@${manifest.version}`;
  unique(
    manifest.files.map((f) => f.name),
    `${what} lists file`,
  );
  unique(
    manifest.model.inputs.map((t) => t.name),
    `${what} declares input`,
  );
  unique(
    manifest.model.outputs.map((t) => t.name),
    `${what} declares output`,
  );
  if (manifest.telemetry) checkTelemetrySpec(manifest, what);
  if (manifest.variants) {
    unique(
      manifest.variants.map((v) => v.name),
      `${what} lists variant`,
    );
    unique([manifest.artifact.sha256, ...manifest.variants.map((v) => v.sha256)], `${what} lists the same artifact twice, sha256`);
  }
  const acceptance = manifest.acceptance;
  if (!acceptance) return;
  if (acceptance.vectorsFile !== undefined) {
    const file = manifest.files.find((f) => f.name === acceptance.vectorsFile);
    if (file?.role !== 'golden-vectors') {
      inconsistent(`${what} names golden vector file "${acceptance.vectorsFile}", which is not one of its files with role golden-vectors`);
    }
  } else if (acceptance.vectors.length === 0) {
    inconsistent(`${what} has an acceptance test without golden vectors or a golden vector file`);
  }
  checkGoldenVectors(manifest, acceptance.vectors, what, inconsistent);
}

/**
 * Checks golden vectors against what the manifest declares: every input given once, each tensor
 * named, typed and shaped as the model declares. `fail` says which error to raise: a manifest that
 * contradicts itself, or acceptance data that does not fit the model.
 */
export function checkGoldenVectors(
  manifest: { readonly model: Pick<ManifestPayload['model'], 'inputs' | 'outputs'> },
  vectors: readonly GoldenVector[],
  what: string,
  fail: (message: string) => never = (message) => {
    throw new EdgefleetError('EF_ACCEPTANCE_DATA_INVALID', message);
  },
): void {
  const inputs = new Map(manifest.model.inputs.map((t) => [t.name, t]));
  const outputs = new Map(manifest.model.outputs.map((t) => [t.name, t]));
  vectors.forEach((vector, index) => {
    for (const [kind, tensors, specs] of [
      ['input', vector.inputs, inputs],
      ['output', vector.outputs, outputs],
    ] as const) {
      const seen = new Set<string>();
      for (const tensor of tensors) {
        if (seen.has(tensor.name)) fail(`${what} golden vector ${index} repeats ${kind} "${tensor.name}"`);
        seen.add(tensor.name);
        const spec = specs.get(tensor.name);
        if (!spec) fail(`${what} golden vector ${index} has ${kind} "${tensor.name}", which the model does not declare`);
        try {
          checkTensorAgainstSpec(tensor, spec);
          decodeTensor(tensor);
        } catch (error) {
          fail(`${what} golden vector ${index}: ${(error as Error).message}`);
        }
      }
    }
    const missing = [...inputs.keys()].find((name) => !vector.inputs.some((t) => t.name === name));
    if (missing !== undefined) fail(`${what} golden vector ${index} does not give input "${missing}"`);
    const mismatch = findSharedDimensionMismatch([
      ...vector.inputs.map((t) => ({ spec: inputs.get(t.name) as TensorSpec, shape: t.shape, kind: 'input' })),
      ...vector.outputs.map((t) => ({ spec: outputs.get(t.name) as TensorSpec, shape: t.shape, kind: 'output' })),
    ]);
    if (mismatch) fail(`${what} golden vector ${index}: ${mismatch}`);
  });
}

function checkTelemetrySpec(manifest: ManifestPayload, what: string): void {
  const features = manifest.telemetry?.features ?? [];
  unique(
    features.map((f) => f.name),
    `${what} declares telemetry feature`,
  );
  for (const feature of features) {
    const tensors = feature.source === 'input' ? manifest.model.inputs : manifest.model.outputs;
    const spec = tensors.find((t) => t.name === feature.tensor);
    const where = `${what} telemetry feature "${feature.name}"`;
    if (!spec) {
      inconsistent(
        `${where} reads ${feature.source} "${feature.tensor}", which the model does not declare (${tensors.map((t) => t.name).join(', ')})`,
      );
    }
    if (feature.kind === 'column') {
      if (feature.index === undefined) inconsistent(`${where} is a column: give its "index" in the last dimension`);
      const width = spec.shape.at(-1);
      if (typeof width === 'number' && feature.index >= width) {
        inconsistent(`${where} reads column ${feature.index} of "${spec.name}", whose last dimension is ${width}`);
      }
    } else if (feature.index !== undefined) {
      inconsistent(`${where}: "index" is for columns only`);
    }
    if ((feature.kind === 'summary') !== (feature.stat !== undefined)) {
      inconsistent(
        `${where}: ${feature.kind === 'summary' ? 'a summary needs a "stat" (mean, std or energy)' : '"stat" is for summaries only'}`,
      );
    }
    if ((feature.kind === 'class' || feature.kind === 'top') && feature.source !== 'output') {
      inconsistent(`${where}: "${feature.kind}" reads class scores, so its source must be "output"`);
    }
    if (feature.type !== undefined && feature.kind !== 'column') inconsistent(`${where}: "type" is for columns only`);
    if (feature.labels !== undefined && feature.kind !== 'class' && feature.type !== 'categorical') {
      inconsistent(`${where}: "labels" are for classes and categorical columns`);
    }
  }
}

// --- Desired state -----------------------------------------------------------------------------

export type DesiredStateInput = Omit<DesiredStatePayload, 'type' | 'issuedAt' | 'expiresAt' | 'remove' | 'rollback'> & {
  readonly remove?: string[];
  readonly rollback?: boolean;
  readonly now?: number;
  /** How long the document is valid; default 30 days. Devices refuse it after that (freeze attack). */
  readonly ttlMs?: number;
};

export function createDesiredState(input: DesiredStateInput): DesiredStatePayload {
  const { now = Date.now(), ttlMs = PROTOCOL_DEFAULTS.desiredStateTtlMs, remove = [], rollback = false, ...fields } = input;
  const payload: DesiredStatePayload = {
    type: DOCUMENT_TYPES.desiredState,
    issuedAt: timestamp(now),
    expiresAt: timestamp(now + ttlMs),
    rollback,
    remove,
    ...fields,
  };
  checkDesiredStateConsistency(validate(DesiredStatePayload, payload));
  return payload;
}

export function signDesiredState(payload: DesiredStatePayload, keys: readonly SigningKey[]): SignedDocument<DesiredStatePayload> {
  checkDesiredStateConsistency(validate(DesiredStatePayload, payload));
  return signPayload(payload, keys);
}

export interface VerifyDesiredStateOptions extends VerifyOptions {
  /** The device doing the verifying: a document for anyone else is refused. */
  readonly deviceId: string;
  /** The highest sequence this device has applied; the document must be above it. */
  readonly lastSequence?: number;
}

export interface VerifiedDesiredState {
  readonly payload: DesiredStatePayload;
  /** The verified manifests, in the document's order. */
  readonly manifests: readonly ManifestPayload[];
  /** The verified shadow candidates' manifests, by model name (a rollout's shadow stage). */
  readonly shadows: ReadonlyMap<string, ManifestPayload>;
}

/**
 * Verifies a desired-state document for one device: signatures by the desired-state role, validity
 * window, addressee, sequence above the last applied one (replay), and every embedded manifest.
 */
export function verifyDesiredState(document: unknown, trust: Trust, options: VerifyDesiredStateOptions): VerifiedDesiredState {
  const signed = validate(SignedDesiredState, document);
  const payload = signed.payload;
  verifySignatures(signed, trust.policy('desired-state'), 'desired-state');
  if (payload.deviceId !== options.deviceId) {
    throw new EdgefleetError(
      'EF_DESIRED_STATE_WRONG_DEVICE',
      `the document is for device "${payload.deviceId}", this is "${options.deviceId}"`,
    );
  }
  checkValidityWindow(payload, `desired state #${payload.sequence}`, options);
  if (options.lastSequence !== undefined && payload.sequence <= options.lastSequence) {
    throw new EdgefleetError(
      'EF_DESIRED_STATE_REPLAYED',
      `desired state #${payload.sequence} is not above #${options.lastSequence}, the last one applied`,
      { details: { sequence: payload.sequence, lastSequence: options.lastSequence } },
    );
  }
  checkDesiredStateConsistency(payload);
  const manifests = payload.models.map((model) => verifyValidManifest(model.manifest, trust, options));
  const shadows = new Map(
    payload.models.flatMap((model) =>
      model.shadow ? [[model.manifest.payload.name, verifyValidManifest(model.shadow.manifest, trust, options)]] : [],
    ) as [string, ManifestPayload][],
  );
  return { payload, manifests, shadows };
}

/** Bytes of each manifest's JSON, by document object: a rollout puts one manifest in thousands of documents. */
const manifestBytes = new WeakMap<object, number>();

/** The size of a desired-state model entry as it travels (JSON, UTF-8 bytes). */
export function desiredEntryBytes(entry: DesiredStatePayload['models'][number]): number {
  let bytes = manifestBytes.get(entry.manifest);
  if (bytes === undefined) {
    bytes = utf8Encode(JSON.stringify(entry.manifest)).length;
    manifestBytes.set(entry.manifest, bytes);
  }
  // {"manifest":…} or {"manifest":…,"rolloutId":"…"}: a rollout id is ASCII (Identifier).
  const own = bytes + '{"manifest":}'.length + (entry.rolloutId === undefined ? 0 : ',"rolloutId":""'.length + entry.rolloutId.length);
  // A shadow candidate travels in the same entry: {"shadow":{"manifest":…,"rate":…}}.
  return entry.shadow ? own + utf8Encode(JSON.stringify(entry.shadow)).length + ',"shadow":'.length : own;
}

/**
 * Refuses a manifest that could not travel in a desired-state document (THREATS 19): checked when a
 * version is registered, when a document is signed, and by devices when they verify one.
 */
export function checkDeliverable(manifest: SignedDocument<ManifestPayload>, rolloutId = 'r'.repeat(128)): void {
  const size = desiredEntryBytes({ manifest: manifest as SignedManifest, rolloutId });
  const limit = PROTOCOL_DEFAULTS.maxDesiredEntryBytes;
  if (size <= limit) return;
  const payload = manifest.payload;
  const parts = (
    [
      ['metadata', payload.metadata],
      ['telemetry', payload.telemetry],
      ['model inputs and outputs', [payload.model.inputs, payload.model.outputs]],
      ['model operators', payload.model.operators],
      ['inline golden vectors', payload.acceptance?.vectors],
      ['files', payload.files],
    ] as const
  )
    .map(([part, value]) => [part, value === undefined ? 0 : JSON.stringify(value).length] as const)
    .sort((a, b) => b[1] - a[1]);
  const largest = parts[0] as readonly [string, number];
  throw new EdgefleetError(
    'EF_MANIFEST_TOO_LARGE',
    `the manifest of ${payload.name}@${payload.version} takes ${size} bytes in a desired-state document, above the ${limit} allowed; its largest part is ${largest[0]} (${largest[1]} bytes)`,
    { details: { size, limit, parts: Object.fromEntries(parts) } },
  );
}

function checkDesiredStateConsistency(payload: DesiredStatePayload): void {
  for (const entry of payload.models) {
    checkDeliverable(entry.manifest, entry.rolloutId ?? '');
    if (entry.shadow) {
      checkDeliverable(entry.shadow.manifest, entry.rolloutId ?? '');
      const [model, candidate] = [entry.manifest.payload, entry.shadow.manifest.payload];
      if (candidate.name !== model.name) {
        inconsistent(`desired state #${payload.sequence} shadows ${model.name} with a manifest of "${candidate.name}"`);
      }
      if (candidate.version === model.version) {
        inconsistent(`desired state #${payload.sequence} shadows ${model.name}@${model.version} with itself`);
      }
    }
  }
  const names = payload.models.map((m) => m.manifest.payload.name);
  unique(names, `desired state #${payload.sequence} lists model`);
  unique(payload.remove, `desired state #${payload.sequence} removes model`);
  const both = payload.remove.find((name) => names.includes(name));
  if (both !== undefined) inconsistent(`desired state #${payload.sequence} both installs and removes model "${both}"`);
}

/**
 * The rollback rule (TUF/Uptane rollback attack): a version older than the floor installs only when
 * a verified desired-state document says rollback.
 */
export function checkVersionFloor(name: string, candidate: string, floor: string | undefined, rollback: boolean): void {
  if (floor === undefined || rollback) return;
  if (compareSemver(candidate, floor) < 0) {
    throw new EdgefleetError('EF_MODEL_VERSION_ROLLBACK', `${name}@${candidate} is older than ${name}@${floor}, the version floor`, {
      details: { name, candidate, floor },
    });
  }
}

// --- Shared checks ----------------------------------------------------------------------------

function checkValidityWindow(payload: { issuedAt: string; expiresAt: string }, what: string, options: VerifyOptions): void {
  const now = options.now ?? Date.now();
  const skew = options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
  const issuedAt = Date.parse(payload.issuedAt);
  const expiresAt = Date.parse(payload.expiresAt);
  if (Number.isNaN(issuedAt) || Number.isNaN(expiresAt) || expiresAt <= issuedAt) {
    inconsistent(`${what} has a validity window from ${payload.issuedAt} to ${payload.expiresAt}, which is empty or not a real date`);
  }
  if (issuedAt > now + skew) {
    throw new EdgefleetError(
      'EF_DOCUMENT_NOT_YET_VALID',
      `${what} was issued at ${payload.issuedAt}, after this clock's ${timestamp(now)}`,
      {
        details: { issuedAt: payload.issuedAt, now: timestamp(now) },
      },
    );
  }
  if (expiresAt <= now) {
    throw new EdgefleetError('EF_DOCUMENT_EXPIRED', `${what} expired at ${payload.expiresAt}`, {
      details: { expiresAt: payload.expiresAt, now: timestamp(now) },
    });
  }
}

/** RFC 3339 UTC as the schemas require, with milliseconds only when present. */
export function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

function unique(values: readonly string[], what: string): void {
  const seen = new Set<string>();
  for (const value of values) {
    if (seen.has(value)) inconsistent(`${what} "${value}" more than once`);
    seen.add(value);
  }
}

function inconsistent(message: string): never {
  throw new EdgefleetError('EF_DOCUMENT_INCONSISTENT', message);
}
