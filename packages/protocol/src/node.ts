/**
 * @edgefleet/protocol/node: what Node parts of edgefleet share beyond the portable protocol:
 * Node's native ed25519 (OpenSSL) for servers and Node devices, ~20x faster than the portable
 * pure-JavaScript default (same signatures, same strictness), and the one atomic file write.
 */
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { type Ed25519Verify, type SigningKey, signingKeyFromSecret } from './signing/index.ts';

export { type AtomicWriteOptions, clearTemporaryFiles, syncFolder, writeFileAtomically } from './atomic-file/index.ts';

// DER prefixes that wrap a raw 32-byte ed25519 key as PKCS#8 (private) and SPKI (public), RFC 8410.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

const publicKeys = new Map<string, ReturnType<typeof createPublicKey>>();

export const nodeVerify: Ed25519Verify = (signature, message, publicKey) => {
  const id = Buffer.from(publicKey).toString('hex');
  let key = publicKeys.get(id);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    if (publicKeys.size > 64) publicKeys.clear();
    publicKeys.set(id, key);
  }
  return verify(null, message, key, signature);
};

/** A signing key whose signatures Node's native ed25519 makes. */
export function nodeSigningKey(secret: Uint8Array | string): SigningKey {
  const key = signingKeyFromSecret(secret);
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, key.secretKey]), format: 'der', type: 'pkcs8' });
  return { ...key, sign: (message) => new Uint8Array(sign(null, message, privateKey)) };
}
