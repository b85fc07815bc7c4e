/**
 * ed25519 signatures over RFC 8785 canonical JSON, with key ids and thresholds.
 *
 * Pure JavaScript (@noble/curves, audited) so that the same code verifies in every browser and in
 * Node with no WebCrypto feature detection. Verification follows RFC 8032 strictly (no ZIP-215
 * leniency): non-canonical encodings are refused, so one document has one valid signature per key.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { canonicalBytes } from '../canonical-json/index.ts';
import { fromBase64Url, toBase64Url, toHex, utf8Decode, utf8Encode } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';
import type { KeyRole, PublicKeyEntry, Signature, SignedDocument } from '../schemas/documents.ts';

/** Prepended to every signed message: a signature made by an edgefleet key means nothing elsewhere. */
const SIGNING_CONTEXT = utf8Encode('edgefleet-signature-v1\n');

export interface SigningKey {
  readonly keyId: string;
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
  /**
   * Signs with this key some other way than the pure-JavaScript default: Node's native ed25519
   * (`@edgefleet/protocol/node`), or a hardware module holding the key.
   */
  readonly sign?: (message: Uint8Array) => Uint8Array;
}

/** Checks one ed25519 signature; throws or returns false when it does not verify. */
export type Ed25519Verify = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) => boolean;

/** The portable default: @noble/curves, strict RFC 8032 (no ZIP-215 leniency). */
export const nobleVerify: Ed25519Verify = (signature, message, publicKey) =>
  ed25519.verify(signature, message, publicKey, { zip215: false });

/** The key id is the sha256 of the raw 32-byte public key: self-certifying, like TUF's. */
export function keyIdOf(publicKey: Uint8Array): string {
  return toHex(sha256(publicKey));
}

export function generateSigningKey(): SigningKey {
  return signingKeyFromSecret(ed25519.utils.randomSecretKey());
}

/** Rebuilds a signing key from its 32-byte secret (as stored, base64url or raw). */
export function signingKeyFromSecret(secret: Uint8Array | string): SigningKey {
  const secretKey = typeof secret === 'string' ? fromBase64Url(secret, 'EF_KEY_INVALID') : secret;
  if (secretKey.length !== 32) throw new EdgefleetError('EF_KEY_INVALID', `secret key is ${secretKey.length} bytes, expected 32`);
  const publicKey = ed25519.getPublicKey(secretKey);
  return { keyId: keyIdOf(publicKey), publicKey, secretKey };
}

/** The public half as it appears in key sets. */
export function publicKeyEntry(key: Pick<SigningKey, 'publicKey'>): PublicKeyEntry {
  return { keyId: keyIdOf(key.publicKey), algorithm: 'ed25519', publicKey: toBase64Url(key.publicKey) };
}

function signedMessage(payload: unknown): Uint8Array {
  const body = canonicalBytes(payload);
  const message = new Uint8Array(SIGNING_CONTEXT.length + body.length);
  message.set(SIGNING_CONTEXT, 0);
  message.set(body, SIGNING_CONTEXT.length);
  return message;
}

/** Signs `payload` with each key. Use the document builders (signManifest...) for checked payloads. */
export function signPayload<P>(payload: P, keys: readonly SigningKey[]): SignedDocument<P> {
  const message = signedMessage(payload);
  const signatures: Signature[] = keys.map((key) => ({
    keyId: key.keyId,
    sig: toBase64Url(key.sign ? key.sign(message) : ed25519.sign(message, key.secretKey)),
  }));
  return { payload, signatures };
}

/** Adds one more signature to an already signed document (threshold signing by several parties). */
export function addSignature<P>(document: SignedDocument<P>, key: SigningKey): SignedDocument<P> {
  const [signature] = signPayload(document.payload, [key]).signatures;
  if (!signature) throw new Error('unreachable: one key gives one signature');
  return { payload: document.payload, signatures: [...document.signatures.filter((s) => s.keyId !== key.keyId), signature] };
}

/** Keys trusted for one role and how many of them must sign. */
export interface RolePolicy {
  readonly keys: ReadonlyMap<string, Uint8Array>;
  readonly threshold: number;
  /** The signature check; default `nobleVerify`. */
  readonly verify?: Ed25519Verify;
  /**
   * Signatures already found valid for this policy, by signature and message: a fleet's devices all
   * receive the same manifest inside their documents, and it need not be verified twice.
   */
  readonly verified?: Map<string, true>;
}

/** Entries kept in a policy's cache of verified signatures. */
const VERIFIED_CACHE_LIMIT = 256;

export interface SignatureCheck {
  /** Ids of the distinct trusted keys whose signatures verified. */
  readonly validKeyIds: readonly string[];
}

/**
 * Checks the signatures of a document against a role policy. Throws, most specific first:
 * EF_SIGNATURE_MISSING (none at all), EF_SIGNATURE_THRESHOLD (some valid, not enough),
 * EF_SIGNATURE_INVALID (a trusted key's signature does not verify), EF_SIGNATURE_UNKNOWN_KEY
 * (only keys outside the policy signed).
 */
export function verifySignatures(document: SignedDocument<unknown>, policy: RolePolicy, role: KeyRole): SignatureCheck {
  if (document.signatures.length === 0) {
    throw new EdgefleetError('EF_SIGNATURE_MISSING', `the ${role} document has no signatures`);
  }
  const message = signedMessage(document.payload);
  const valid = new Set<string>();
  const invalid = new Set<string>();
  const unknown = new Set<string>();
  for (const { keyId, sig } of document.signatures) {
    const publicKey = policy.keys.get(keyId);
    if (!publicKey) {
      unknown.add(keyId);
      continue;
    }
    // Counting each key once: repeating one key's signature must not reach a threshold.
    if (valid.has(keyId)) continue;
    if (verifyOne(sig, message, publicKey, policy)) valid.add(keyId);
    else invalid.add(keyId);
  }
  const details = { role, threshold: policy.threshold, valid: [...valid], invalid: [...invalid], unknown: [...unknown] };
  if (valid.size >= policy.threshold) return { validKeyIds: [...valid] };
  if (valid.size > 0) {
    throw new EdgefleetError(
      'EF_SIGNATURE_THRESHOLD',
      `the ${role} document has ${valid.size} valid signature(s) from trusted keys, ${policy.threshold} required`,
      { details },
    );
  }
  if (invalid.size > 0) {
    throw new EdgefleetError(
      'EF_SIGNATURE_INVALID',
      `the ${role} document's signature by key ${[...invalid][0]?.slice(0, 16)}… does not verify`,
      {
        details,
      },
    );
  }
  throw new EdgefleetError(
    'EF_SIGNATURE_UNKNOWN_KEY',
    `the ${role} document is signed by key(s) ${[...unknown].map((k) => `${k.slice(0, 16)}…`).join(', ')}, none trusted for this role`,
    { details },
  );
}

function verifyOne(sig: string, message: Uint8Array, publicKey: Uint8Array, policy: RolePolicy): boolean {
  const cacheKey = policy.verified ? `${sig}\n${utf8Decode(message)}` : undefined;
  if (cacheKey !== undefined && policy.verified?.has(cacheKey)) return true;
  let signature: Uint8Array;
  try {
    signature = fromBase64Url(sig, 'EF_SIGNATURE_INVALID');
  } catch {
    return false;
  }
  let ok: boolean;
  try {
    ok = (policy.verify ?? nobleVerify)(signature, message, publicKey);
  } catch {
    // Malformed points or lengths: implementations throw; to the caller that is simply a bad signature.
    ok = false;
  }
  if (ok && cacheKey !== undefined && policy.verified) {
    if (policy.verified.size >= VERIFIED_CACHE_LIMIT) policy.verified.delete(policy.verified.keys().next().value as string);
    policy.verified.set(cacheKey, true);
  }
  return ok;
}

/** Decodes a public key entry, checking that its id really is the hash of its key. */
export function decodePublicKey(entry: PublicKeyEntry): Uint8Array {
  const publicKey = fromBase64Url(entry.publicKey, 'EF_KEY_INVALID');
  if (publicKey.length !== 32) throw new EdgefleetError('EF_KEY_INVALID', `public key ${entry.keyId.slice(0, 16)}… is not 32 bytes`);
  if (keyIdOf(publicKey) !== entry.keyId) {
    throw new EdgefleetError('EF_KEY_INVALID', `key id ${entry.keyId.slice(0, 16)}… is not the sha256 of its public key`);
  }
  return publicKey;
}
