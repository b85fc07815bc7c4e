/**
 * (About 420 lines: most of it is the registry itself, one entry per code, kept in one table.)
 *
 * One registry of every error a user of edgefleet can meet.
 *
 * Each code is stable (devices, the server, dashboards and scripts match on it), maps to one
 * HTTP status for the admin API's RFC 9457 problem+json bodies, and carries a `fix`: what the
 * reader should do about it. Packages add their codes here rather than inventing local ones, so
 * that a code seen in an MQTT event means the same thing in an HTTP response and in the docs.
 * `docs/errors.md` is generated from this table (`pnpm docs:errors`) and a test keeps them equal.
 */

export interface ErrorDefinition {
  /** HTTP status used when this error answers an admin API request. */
  readonly status: number;
  /** What happened, in one short sentence. */
  readonly title: string;
  /** What to do about it. */
  readonly fix: string;
}

function defineErrors<const T extends Record<`EF_${string}`, ErrorDefinition>>(table: T): T {
  return Object.freeze(table);
}

export const ERRORS = defineErrors({
  // --- Messages and schemas -------------------------------------------------------------------
  EF_JSON_INVALID: {
    status: 400,
    title: 'The message is not valid UTF-8 JSON',
    fix: 'Send a UTF-8 encoded JSON document; check the sender for truncation or a binary payload.',
  },
  EF_MESSAGE_TOO_LARGE: {
    status: 413,
    title: 'The message is larger than the limit for its kind',
    fix: 'Send less per message (split telemetry into smaller windows, move golden vectors into a file) or raise the limit in the server configuration.',
  },
  EF_SCHEMA_INVALID: {
    status: 400,
    title: 'The message does not match its schema',
    fix: 'Correct the field named in the error (see docs/protocol.md for the schema) and send it again.',
  },
  EF_TOPIC_INVALID: {
    status: 400,
    title: 'The MQTT topic is not an edgefleet topic',
    fix: 'Build topics with the protocol package (createTopicScheme().build) instead of by hand; see the topic scheme in docs/protocol.md.',
  },
  EF_DEVICE_ID_INVALID: {
    status: 400,
    title: 'The device id is not allowed',
    fix: 'Use 1-64 characters from A-Z a-z 0-9 . _ : - starting with a letter or digit; MQTT wildcards (+ #), "/" and empty ids are never allowed.',
  },
  EF_MODEL_NAME_INVALID: {
    status: 400,
    title: 'The model name is not allowed',
    fix: 'Use 1-64 characters from a-z 0-9 . _ - starting with a letter or digit.',
  },
  EF_VERSION_INVALID: {
    status: 400,
    title: 'The version is not a semantic version',
    fix: 'Use a Semantic Versioning 2.0.0 version such as 1.4.0 or 2.0.0-rc.1 (no leading "v").',
  },
  EF_TENSOR_INVALID: {
    status: 400,
    title: 'The tensor data does not match its dtype and shape',
    fix: 'Make the data hold exactly product(shape) elements of the dtype, little-endian, base64url encoded.',
  },
  EF_CANONICAL_JSON_UNSUPPORTED: {
    status: 400,
    title: 'The value cannot be canonicalized for signing',
    fix: 'Sign only plain JSON: no NaN or Infinity, no undefined, functions, bigints, dates or class instances.',
  },

  // --- Signatures and trust (TUF / Uptane threats) ---------------------------------------------
  EF_KEY_INVALID: {
    status: 400,
    title: 'The key is not a valid ed25519 key',
    fix: 'Provide a 32-byte ed25519 key, base64url encoded; generate one with generateSigningKey().',
  },
  EF_SIGNATURE_MISSING: {
    status: 422,
    title: 'The document carries no signature',
    fix: 'Sign the document with a trusted key (signDocument) before sending it.',
  },
  EF_SIGNATURE_UNKNOWN_KEY: {
    status: 422,
    title: 'The document is signed only by keys this verifier does not trust for its role',
    fix: 'Sign with a key listed in the trusted key set for this role, or distribute a key set (signed by the root keys) that adds the new key.',
  },
  EF_SIGNATURE_INVALID: {
    status: 422,
    title: 'A signature does not match the document',
    fix: 'The document or its signature was altered after signing; fetch an intact copy from the server and never edit signed documents by hand.',
  },
  EF_SIGNATURE_THRESHOLD: {
    status: 422,
    title: 'Fewer valid signatures than the threshold requires',
    fix: 'Collect signatures from enough distinct trusted keys to reach the threshold for this role.',
  },
  EF_DOCUMENT_EXPIRED: {
    status: 422,
    title: 'The signed document has expired',
    fix: 'A stale document may be replayed by an attacker (freeze attack); ask the server for a freshly signed one. Check the device clock if this keeps happening.',
  },
  EF_DOCUMENT_NOT_YET_VALID: {
    status: 422,
    title: 'The signed document was issued in the future',
    fix: 'Check the clocks of the signer and the device (NTP); documents are refused when issued more than the allowed clock skew ahead.',
  },
  EF_DOCUMENT_INCONSISTENT: {
    status: 422,
    title: 'The signed document contradicts itself',
    fix: 'Regenerate the document with the protocol package builders; the error names the conflicting fields.',
  },
  EF_KEYSET_INVALID: {
    status: 422,
    title: 'The key set is not usable',
    fix: 'Every role must name keys present in the key set, with a threshold between 1 and the number of its keys.',
  },
  EF_KEYSET_ROLLBACK: {
    status: 422,
    title: 'The key set is not newer than the trusted one',
    fix: 'Key sets only move forward: publish the rotation with a version above the one devices trust.',
  },

  // --- Desired state and versions -------------------------------------------------------------
  EF_DESIRED_STATE_WRONG_DEVICE: {
    status: 422,
    title: 'The desired-state document is addressed to another device',
    fix: 'Publish each device its own document; a document for one device is never valid for another.',
  },
  EF_DESIRED_STATE_REPLAYED: {
    status: 409,
    title: 'The desired-state sequence is not above the last one applied',
    fix: 'The server issues a higher sequence for every new document; an older or repeated document is ignored.',
  },
  EF_MODEL_VERSION_ROLLBACK: {
    status: 409,
    title: 'The model version is older than the version floor',
    fix: 'Only a signed desired-state document with rollback set may install an older version: roll back from the server with a rollout created with "rollback": true (POST /v1/rollouts), or PUT /v1/devices/{id}/desired/{model} with "rollback": true.',
  },
  EF_MANIFEST_TOO_LARGE: {
    status: 422,
    title: 'The manifest is too large to travel in a desired-state document',
    fix: 'Each model entry of a desired-state document is at most 8 KiB (PROTOCOL_DEFAULTS.maxDesiredEntryBytes) so that every document fits the broker; golden vectors travel as a file and do not count. Shorten what the message names (metadata, telemetry labels or features).',
  },
  EF_DESIRED_STATE_TOO_LARGE: {
    status: 422,
    title: 'The desired-state document would exceed the broker’s message limit',
    fix: 'The device was not sent the change and keeps its current document. Remove models the device no longer needs, or raise EDGEFLEET_MQTT_MAX_PAYLOAD on the server and its broker.',
  },
  EF_MODEL_TARGET_MISMATCH: {
    status: 422,
    title: 'The model is not built for this device',
    fix: 'Target the rollout at devices of a class the manifest lists, or publish a version for this device class or runtime version.',
  },

  // --- Downloads and artifacts ----------------------------------------------------------------
  EF_DOWNLOAD_FAILED: {
    status: 502,
    title: 'The download failed after every retry',
    fix: 'Check that the device can reach the artifact URL and that the server answers it; the previous model keeps serving and the install can be retried.',
  },
  EF_DOWNLOAD_TIMEOUT: {
    status: 504,
    title: 'The download did not finish within its deadline',
    fix: 'The link is too slow or the server is stalling (slow-retrieval attack); retry on a better link or raise the download deadline.',
  },
  EF_DOWNLOAD_TOO_LARGE: {
    status: 502,
    title: 'The server sent more bytes than the signed size',
    fix: 'The artifact served is not the one signed (endless-data attack or a wrong file on the server); fix the server’s copy. Nothing was kept.',
  },
  EF_DOWNLOAD_INCOMPLETE: {
    status: 502,
    title: 'The download ended before the signed size',
    fix: 'The server’s copy is truncated or the connection kept dropping; check the artifact on the server and retry.',
  },
  EF_ARTIFACT_HASH_MISMATCH: {
    status: 502,
    title: 'The downloaded bytes do not match the signed sha256',
    fix: 'The artifact was altered or corrupted in transit or on the server; nothing was stored. Re-upload the model or check the mirror serving it.',
  },
  EF_ARTIFACT_SOURCE_MISSING: {
    status: 400,
    title: 'No source was given for a file the manifest lists',
    fix: 'Pass every file of the manifest to install (options.files by name), or a base URL the files can be fetched from.',
  },

  // --- Storage ----------------------------------------------------------------------------------
  EF_STORE_FULL: {
    status: 507,
    title: 'The device storage is full',
    fix: 'Free space on the device (or ask the browser for persistent storage); the active model keeps serving and the install can be retried.',
  },
  EF_STORE_UNAVAILABLE: {
    status: 503,
    title: 'The model store cannot be read or written',
    fix: 'Check the store location (file permissions, disk health, private browsing mode blocking IndexedDB); the error names the operation that failed.',
  },
  EF_BROKER_UNAVAILABLE: {
    status: 503,
    title: 'The MQTT broker did not answer the fleet server',
    fix: 'Check that the external broker (EDGEFLEET_BROKER_URL) runs and that the server’s credentials may manage clients and roles (Mosquitto: the dynamic-security admin); nothing was changed, retry the request.',
  },
  EF_STORE_CORRUPT: {
    status: 500,
    title: 'A stored model does not match its recorded hash',
    fix: 'The stored copy was damaged on disk; the runtime fell back to the previous version where it had one. Reinstall the model.',
  },

  // --- Engines and inference --------------------------------------------------------------------
  EF_MODEL_INVALID: {
    status: 422,
    title: 'The model cannot be loaded by the inference engine',
    fix: 'Check that the file is a valid ONNX model without external data files and that its operators are supported by onnxruntime-web; the engine’s message is attached.',
  },
  EF_ENGINE_UNAVAILABLE: {
    status: 422,
    title: 'No execution provider the model allows is available on this device',
    fix: 'Allow another execution provider in the manifest (e.g. wasm besides webgpu), or install onnxruntime-node on Node devices for cpu.',
  },
  EF_ACCEPTANCE_FAILED: {
    status: 422,
    title: 'The model failed its acceptance test on every execution provider tried',
    fix: 'The outputs differ from the golden vectors beyond the tolerance; check the model and the golden vectors, or widen the tolerance if the difference is expected. The previous model keeps serving.',
  },
  EF_ACCEPTANCE_DATA_INVALID: {
    status: 422,
    title: 'The acceptance test cannot be run: its golden vectors are missing, unreadable or do not fit the model',
    fix: 'A model whose acceptance data cannot be checked never activates. Register the version again with golden vectors or sample inputs that match its inputs and outputs; the previous model keeps serving.',
  },
  EF_MODEL_NOT_INSTALLED: {
    status: 404,
    title: 'No active version of this model is installed',
    fix: 'Install the model first (runtime.install) and wait for it to activate; runtime.models() lists what is installed.',
  },
  EF_INPUT_INVALID: {
    status: 400,
    title: 'The inputs do not match what the model declares',
    fix: 'Pass every declared input once, with the declared dtype and a shape that fits the declared one; the error names the input.',
  },
  EF_INFERENCE_FAILED: {
    status: 500,
    title: 'The inference engine failed while running the model',
    fix: 'The engine’s message is attached; if it persists on valid inputs, roll back to the previous version.',
  },
  EF_ROLLBACK_UNAVAILABLE: {
    status: 409,
    title: 'There is no previous version to roll back to',
    fix: 'A rollback needs a version that was active before the current one; install the older version with a signed rollback instead.',
  },
  // --- Fleet server ---------------------------------------------------------------------------
  EF_UNAUTHORIZED: {
    status: 401,
    title: 'The request carries no valid credentials',
    fix: 'Send an admin token as "Authorization: Bearer <token>" (printed once on first start, or EDGEFLEET_ADMIN_TOKEN); devices use their own credential.',
  },
  EF_FORBIDDEN: {
    status: 403,
    title: 'The credentials do not allow this',
    fix: 'Use a token with the admin scope for changes; read-only tokens can only read.',
  },
  EF_NOT_FOUND: {
    status: 404,
    title: 'There is nothing at this address',
    fix: 'Check the path and the name, version or id in it; GET /docs lists every route.',
  },
  EF_URL_TOO_LONG: {
    status: 414,
    title: 'The URL is longer than the server accepts',
    fix: 'Names, ids and versions in a path are at most 64 characters, hashes 64 hex digits: check what built the URL.',
  },
  EF_RANGE_NOT_SATISFIABLE: {
    status: 416,
    title: 'The requested byte range is outside the file',
    fix: 'Ask for a range within the size that Content-Range gives (bytes */<size>), or drop the Range header to download the whole file.',
  },
  EF_CURSOR_INVALID: {
    status: 400,
    title: 'The cursor is not one this list gave for these filters',
    fix: 'Pass the "next" value of the previous page unchanged, with the same filters, or start again without a cursor.',
  },
  EF_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    title: 'The request body is of a type this route does not take',
    fix: 'Send the Content-Type the route documents (application/json, or multipart/form-data for uploads); GET /docs lists each route.',
  },
  EF_MULTIPART_INVALID: {
    status: 400,
    title: 'The upload is not a well-formed multipart/form-data body',
    fix: 'Send multipart/form-data with its boundary in the Content-Type header (curl -F or FormData do this), fields and files in any order; the message says what was malformed.',
  },
  EF_PRECONDITION_FAILED: {
    status: 412,
    title: 'The resource changed since you read it',
    fix: 'Your If-Match ETag is not the resource’s current one: GET it again, check the change still makes sense, and retry with the new ETag.',
  },
  EF_IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    title: 'This Idempotency-Key was used for a different request',
    fix: 'A key names one request: retry with the same method, path and body, or use a new key (a fresh UUID) for a new request.',
  },
  EF_IDEMPOTENCY_KEY_IN_FLIGHT: {
    status: 409,
    title: 'A request with this Idempotency-Key is still being processed',
    fix: 'Wait for the first request to finish, then retry with the same key to get its answer.',
  },
  EF_LAST_ADMIN_TOKEN: {
    status: 409,
    title: 'This is the last admin token; revoking it would lock every admin out',
    fix: 'Create another admin token first (POST /v1/admin-tokens, fleetctl tokens create --scope admin), then revoke this one.',
  },
  EF_RATE_LIMITED: {
    status: 429,
    title: 'Too many requests',
    fix: 'Slow down and retry after the number of seconds in the Retry-After header.',
  },
  EF_ONNX_INVALID: {
    status: 422,
    title: 'The upload is not a valid ONNX model',
    fix: 'Upload the .onnx file itself (a serialized ModelProto with a graph); the error says where parsing failed.',
  },
  EF_ONNX_EXTERNAL_DATA: {
    status: 422,
    title: 'The model keeps tensors in external data files',
    fix: 'Save the model with all tensors inside the .onnx file (onnx.save_model(..., save_as_external_data=False)); external files are never read.',
  },
  EF_REFERENCE_INVALID: {
    status: 422,
    title: 'The reference dataset cannot be read',
    fix: 'Send CSV with a header row (or JSON lines, one object per row) whose columns are the model’s telemetry feature names, with numbers for numeric features; the message names the first row or column at fault.',
  },
  EF_MODEL_VERSION_EXISTS: {
    status: 409,
    title: 'This model version already exists; versions are immutable',
    fix: 'Publish the change under a new semantic version.',
  },
  EF_MODEL_VERSION_IN_USE: {
    status: 409,
    title: 'The model version is in use',
    fix: 'The message says by what: move its aliases, finish or abort the rollouts that install it or would roll back to it, and move the devices that run it to another version before deleting it.',
  },
  EF_MODEL_VERSION_DELETED: {
    status: 409,
    title: 'This version was deleted, and a version names one set of bytes forever',
    fix: 'Publish these bytes under a new semantic version; only the deleted version’s own bytes may be registered under its number again.',
  },
  EF_DEVICE_UNKNOWN: {
    status: 404,
    title: 'No device has this id',
    fix: 'Enroll the device first (POST /v1/devices or an enrollment token); GET /v1/devices lists them.',
  },
  EF_DEVICE_EXISTS: {
    status: 409,
    title: 'A device with this id already exists',
    fix: 'Pick another id, or delete the old device first.',
  },
  EF_DEVICE_REVOKED: {
    status: 403,
    title: 'The device was revoked',
    fix: 'A revoked device cannot connect or download; enroll it again under a new credential if it should come back.',
  },
  EF_ENROLLMENT_TOKEN_INVALID: {
    status: 401,
    title: 'The enrollment token is unknown, expired or used up',
    fix: 'Ask an admin for a new enrollment token (POST /v1/enrollment-tokens).',
  },
  EF_ROLLOUT_CONFLICT: {
    status: 409,
    title: 'A targeted device is already in an active rollout of this model',
    fix: 'Finish, abort or narrow the other rollout first (GET /v1/rollouts lists them), or target other devices.',
  },
  EF_ROLLOUT_NO_DEVICES: {
    status: 422,
    title: 'The rollout targets no device',
    fix: 'Check the selector: every tag listed must be on a device, and the devices must be active (GET /v1/devices?tag=...).',
  },
  EF_ROLLOUT_STAGES_INVALID: {
    status: 400,
    title: 'The rollout stages cannot run in this order',
    fix: 'Shadow stages ("shadow": true: devices run the version beside theirs, it never answers) come first; at least one stage after them puts the version live, and a "shadowRate" belongs to a shadow stage only. A rollback has no shadow stage.',
  },
  EF_ROLLOUT_SELECTOR_INVALID: {
    status: 400,
    title: 'The rollout selector names no devices, or names them two ways',
    fix: 'Give "tags" (devices carrying all of them) and/or "devices" (ids), each non-empty; to target the whole fleet, say so explicitly with "selector": {"all": true} and nothing else.',
  },
  EF_MODEL_DOWNGRADE: {
    status: 409,
    title: 'The version is older than what the targeted devices run',
    fix: 'Devices refuse an older version unless the change is signed as a rollback: create the rollout with "rollback": true (or assign with "rollback": true), which is audited as one.',
  },
  EF_DATASET_INVALID: {
    status: 400,
    title: 'The evaluation dataset cannot be read as samples of this model',
    fix: 'Send CSV or JSON lines (one sample per row, a "label" column, the other columns feeding the model\'s single input) or an .npz (np.savez) with one array per model input, named as the input, and a "label" array; the first axis counts samples. The message names the row or array at fault.',
  },
  EF_VARIANT_INVALID: {
    status: 400,
    title: 'A variant does not fit the version it is uploaded with',
    fix: 'A variant is the same model in another build (float16, int8): it must be a valid ONNX model with the same inputs and outputs (names and element types) as the "model" file, and reproduce its outputs on the sample inputs within its tolerance. Send "quantize": "int8" to have the server build the int8 variant; the message says what differs.',
  },
  EF_EVALUATION_FAILED: {
    status: 422,
    title: 'The model could not be evaluated on the dataset',
    fix: "Read the evaluation's error: a sample onnxruntime cannot run, or an output the task mapping cannot read (its name, its size, a class index without a label). Fix the dataset or the mapping and evaluate again.",
  },
  EF_EVALUATION_PENDING: {
    status: 409,
    title: 'An evaluation the promotion policy needs has not finished',
    fix: 'Wait for it (GET /v1/evaluations/{id} shows its progress; fleetctl evaluations wait ID), then create the rollout again.',
  },
  EF_POLICY_FAILED: {
    status: 422,
    title: "The version fails its model's promotion policy",
    fix: 'The message names each metric, its value and the threshold. Register a better version, or change the policy (PUT /v1/models/{name}/policy); to roll out anyway, create the rollout with "policyOverride": {"reason": "..."}, which is audited.',
  },
  EF_LEASE_LOST: {
    status: 409,
    title: 'Another server replica drives this job now',
    fix: 'Nothing to do: the replica that holds the lease carries on (a replica that stalled past its lease lost it). Seen in logs, not in answers.',
  },
  EF_ROLLOUT_STATE: {
    status: 409,
    title: 'The rollout is not in a state that allows this',
    fix: 'Pause and resume apply to running and paused rollouts; a completed, aborted or rolled-back rollout is final.',
  },
  EF_INTERNAL_ERROR: {
    status: 500,
    title: 'An unexpected error happened',
    fix: 'This is a bug or an unforeseen environment problem: report it with the message and details attached. Nothing was activated.',
  },
  EF_RUNTIME_CLOSED: {
    status: 503,
    title: 'The runtime was closed',
    fix: 'Create a new runtime (createRuntime) to install or run models.',
  },
});

export type ErrorCode = keyof typeof ERRORS;

export interface EdgefleetErrorOptions {
  /** Machine-readable specifics (the field, the limit, the key id...). */
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

/**
 * The one error class of edgefleet. `code` is stable; `message` says what happened in this case
 * and what to do; `details` holds the specifics for programs.
 *
 * @example
 * throw new EdgefleetError('EF_DOCUMENT_EXPIRED', 'manifest expired at 2026-01-01T00:00:00Z');
 */
export class EdgefleetError extends Error {
  override readonly name = 'EdgefleetError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, detail?: string, options: EdgefleetErrorOptions = {}) {
    const definition = ERRORS[code];
    super(`${code}: ${detail ?? definition.title}. ${definition.fix}`, { cause: options.cause });
    this.code = code;
    this.status = definition.status;
    this.details = options.details ?? {};
  }

  /** The shape used on the wire: in MQTT events and in problem+json bodies (`code`, `detail`). */
  toJSON(): { code: ErrorCode; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** True when `value` is an edgefleet error, optionally with one of the given codes. */
export function isEdgefleetError(value: unknown, ...codes: ErrorCode[]): value is EdgefleetError {
  return value instanceof EdgefleetError && (codes.length === 0 || codes.includes(value.code));
}

/** The markdown table of every code; `docs/errors.md` must equal this (a test checks). */
export function renderErrorDocs(): string {
  const rows = (Object.entries(ERRORS) as [ErrorCode, ErrorDefinition][]).map(
    ([code, d]) => `| \`${code}\` | ${d.status} | ${d.title}. | ${d.fix} |`,
  );
  return [
    '# Error codes',
    '',
    '<!-- Generated from packages/protocol/src/errors/index.ts by `pnpm docs:errors`; do not edit by hand. -->',
    '',
    'Every error edgefleet reports carries one of these stable codes: in exceptions (`error.code`),',
    'in MQTT event messages (`error.code`) and in the admin API’s RFC 9457 problem+json bodies.',
    'The HTTP status is the one the admin API answers with.',
    '',
    '| Code | HTTP | What happened | What to do |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
