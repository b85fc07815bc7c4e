/**
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
    fix: 'Only a signed desired-state document with rollback set may install an older version; start a rollback from the server instead.',
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
