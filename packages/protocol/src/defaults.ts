/**
 * Every default of the protocol in one typed place. Callers override per call (ttlMs, clockSkewMs,
 * maxBytes, the topic root); nothing here is mutable at run time.
 */
const DAY_MS = 24 * 3600 * 1000;

export const PROTOCOL_DEFAULTS = {
  /** First topic level(s) of every edgefleet topic. */
  topicRoot: 'edgefleet',
  /**
   * How far ahead of the verifier's clock a document may claim to have been issued. Devices
   * without a real-time clock drift; five minutes absorbs NTP-less drift of a day or so on most
   * boards without letting a document from the far future in.
   */
  clockSkewMs: 5 * 60 * 1000,
  /** Key sets change rarely and are verified against the previous one: a year. */
  keySetTtlMs: 365 * DAY_MS,
  /** Devices may install from a manifest for 90 days; the server re-signs to extend. Running is not bounded. */
  manifestTtlMs: 90 * DAY_MS,
  /** A desired-state document older than 30 days is refused as stale (TUF freeze attack). */
  desiredStateTtlMs: 30 * DAY_MS,
  /**
   * The largest model entry (signed manifest + rollout id) of a desired-state document, in bytes of
   * JSON. 32 entries and the envelope stay under 257 KiB, inside the 512 KiB devices accept for a
   * desired-state message and the 1 MiB broker default, whatever the models. Large parts of a model
   * (golden vectors) travel as files the manifest lists by hash, never inline. Measured manifests:
   * Silero VAD 1.4 KiB, PaddleOCR v4 1.3 KiB.
   */
  maxDesiredEntryBytes: 8 * 1024,
} as const;
