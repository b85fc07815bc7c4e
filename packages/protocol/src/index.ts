/**
 * @edgefleet/protocol — the wire contract shared by devices and the fleet server.
 * Pure TypeScript, no I/O: runs in browsers and Node alike.
 */
export { canonicalBytes, canonicalize } from './canonical-json/index.ts';
export { PROTOCOL_DEFAULTS } from './defaults.ts';
export {
  checkDeliverable,
  checkGoldenVectors,
  checkVersionFloor,
  createDesiredState,
  createKeySet,
  createManifest,
  createTrust,
  DEFAULT_CLOCK_SKEW_MS,
  type DesiredStateInput,
  desiredEntryBytes,
  type KeySetInput,
  type ManifestInput,
  revokedKeyIds,
  signDesiredState,
  signKeySet,
  signManifest,
  type Trust,
  type TrustOptions,
  timestamp,
  type VerifiedDesiredState,
  type VerifyDesiredStateOptions,
  type VerifyOptions,
  verifyDesiredState,
  verifyKeySetUpdate,
  verifyManifest,
} from './documents/index.ts';
export { bytesEqual, fromBase64Url, fromHex, toBase64Url, toHex, utf8Decode, utf8Encode } from './encoding/index.ts';
export {
  EdgefleetError,
  type EdgefleetErrorOptions,
  ERRORS,
  type ErrorCode,
  type ErrorDefinition,
  isEdgefleetError,
  renderErrorDocs,
} from './errors/index.ts';
export { decodeGoldenVectors, encodeGoldenVectors, GOLDEN_VECTORS_FILE, goldenVectorsEntry } from './golden/index.ts';
export { assertDeviceId, assertModelName, DEVICE_ID_PATTERN, isDeviceId, isModelName, MODEL_NAME_PATTERN } from './ids/index.ts';
export { type DecodeOptions, decodeMessage, encodeMessage, encodeMessageText } from './messages/index.ts';
export * from './schemas/index.ts';
export { compareSemver, isSemver, parseSemver, SEMVER_PATTERN, type SemVer } from './semver/index.ts';
export {
  addSignature,
  decodePublicKey,
  generateSigningKey,
  keyIdOf,
  publicKeyEntry,
  type RolePolicy,
  type SignatureCheck,
  type SigningKey,
  signingKeyFromSecret,
  signPayload,
  verifySignatures,
} from './signing/index.ts';
export {
  checkTensorAgainstSpec,
  compareWithTolerance,
  type DecodedTensor,
  DTYPE_BYTES,
  decodeTensor,
  elementCount,
  encodeTensor,
  findSharedDimensionMismatch,
  shapeFits,
  type TensorArray,
  type ToleranceReport,
} from './tensor/index.ts';
export {
  createTopicScheme,
  DEFAULT_TOPIC_ROOT,
  type DeviceTopic,
  PROTOCOL_VERSION,
  TOPIC_KIND_NAMES,
  TOPIC_KINDS,
  type TopicDirection,
  type TopicKind,
  type TopicKindSpec,
  type TopicScheme,
} from './topics/index.ts';
export {
  findForbiddenKey,
  matches,
  type ParseJsonOptions,
  parseAndValidate,
  parseJson,
  type ValidationIssue,
  validate,
} from './validation/index.ts';
