/**
 * The golden vectors of a version's acceptance test: those inline in the manifest and those of its
 * golden vectors file (stored, hash-checked at download). A manifest that asks for an acceptance
 * test the device cannot run (no vectors, a file it cannot read or that does not fit the model) is
 * refused: it must never activate untested.
 */
import { decodeGoldenVectors, EdgefleetError, type GoldenVector, type ManifestPayload } from '@edgefleet/protocol';
import type { ModelStore } from '../store/types.ts';

export async function acceptanceVectors(
  store: Pick<ModelStore, 'readArtifact'>,
  manifest: ManifestPayload,
  /** Content hashes of the manifest's other files, by file name. */
  files: Readonly<Record<string, string>>,
): Promise<readonly GoldenVector[]> {
  const acceptance = manifest.acceptance;
  if (!acceptance) return [];
  const vectors = [...acceptance.vectors];
  if (acceptance.vectorsFile !== undefined) {
    const sha256 = files[acceptance.vectorsFile];
    if (sha256 === undefined) {
      throw new EdgefleetError(
        'EF_ACCEPTANCE_DATA_INVALID',
        `${manifest.name}@${manifest.version} names golden vectors file "${acceptance.vectorsFile}", which was not stored with it`,
      );
    }
    vectors.push(...decodeGoldenVectors(await store.readArtifact(sha256), manifest));
  }
  if (vectors.length === 0) {
    throw new EdgefleetError(
      'EF_ACCEPTANCE_DATA_INVALID',
      `${manifest.name}@${manifest.version} has an acceptance test without golden vectors`,
    );
  }
  return vectors;
}
