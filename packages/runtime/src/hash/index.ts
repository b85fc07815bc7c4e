/** Incremental sha256: the platform entry points pick the fastest one available. */
import { toHex } from '@edgefleet/protocol';
import { sha256 } from '@noble/hashes/sha2.js';

export interface Hasher {
  update(chunk: Uint8Array): void;
  /** Lower-case hex digest. */
  digest(): string;
}

export type HasherFactory = () => Hasher;

/** Pure JavaScript sha256 (browsers: WebCrypto cannot hash a stream incrementally). */
export const createNobleHasher: HasherFactory = () => {
  const state = sha256.create();
  return {
    update: (chunk) => {
      state.update(chunk);
    },
    digest: () => toHex(state.digest()),
  };
};
