/**
 * The golden vectors file of an acceptance test (`acceptance.vectorsFile`): JSON of type
 * `edgefleet.golden-vectors/v1`, listed in the signed manifest by sha256 and size like the model
 * itself. Large sample inputs travel this way, so manifests and desired-state documents stay small
 * whatever the models (THREATS 19).
 */
import { checkGoldenVectors } from '../documents/index.ts';
import { utf8Encode } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';
import { DOCUMENT_TYPES, type GoldenVector, GoldenVectorsFile, type ManifestFile, type ManifestPayload } from '../schemas/index.ts';
import { parseJson, validate } from '../validation/index.ts';

/** The name and media type the fleet server gives the file. */
export const GOLDEN_VECTORS_FILE = { name: 'golden-vectors.json', mediaType: 'application/json' } as const;

/** Serializes golden vectors as the file a manifest lists. */
export function encodeGoldenVectors(vectors: readonly GoldenVector[]): Uint8Array {
  const file: GoldenVectorsFile = { type: DOCUMENT_TYPES.goldenVectors, vectors: [...vectors] };
  validate(GoldenVectorsFile, file);
  return utf8Encode(JSON.stringify(file));
}

/** The manifest entry of a golden vectors file, for bytes already hashed. */
export function goldenVectorsEntry(sha256: string, size: number): ManifestFile {
  return { name: GOLDEN_VECTORS_FILE.name, role: 'golden-vectors', sha256, size, mediaType: GOLDEN_VECTORS_FILE.mediaType };
}

/**
 * Reads a golden vectors file (already hash-checked against the manifest) and checks every vector
 * against the model's declared inputs and outputs. Anything unreadable is EF_ACCEPTANCE_DATA_INVALID:
 * a model whose acceptance test cannot be run must never activate.
 */
export function decodeGoldenVectors(bytes: Uint8Array, manifest: Pick<ManifestPayload, 'name' | 'version' | 'model'>): GoldenVector[] {
  const what = `${manifest.name}@${manifest.version}`;
  let file: GoldenVectorsFile;
  try {
    file = validate(GoldenVectorsFile, parseJson(bytes, { maxBytes: Number.MAX_SAFE_INTEGER }), 'golden vectors file');
  } catch (error) {
    throw new EdgefleetError(
      'EF_ACCEPTANCE_DATA_INVALID',
      `the golden vectors file of ${what} cannot be read: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  checkGoldenVectors(manifest, file.vectors, what);
  return file.vectors;
}
