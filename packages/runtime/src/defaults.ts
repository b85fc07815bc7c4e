import type { DownloadPolicy } from './download/index.ts';

/** The runtime's own version: manifests may require a minimum (runtime.minRuntimeVersion). */
export const RUNTIME_VERSION = '0.1.0';

export const RUNTIME_DEFAULTS = {
  download: {
    // Five attempts ride out a flaky link or a server restart without keeping a device busy for long.
    attempts: 5,
    initialBackoffMs: 500,
    maxBackoffMs: 30_000,
    // A minute of fixed allowance plus the signed size at 8 KiB/s, the slowest link we still call
    // working: a 5 MB model gets ~11 minutes. A 1 byte/s drip (slow-retrieval attack) hits the deadline.
    deadlineBaseMs: 60_000,
    minBytesPerSecond: 8 * 1024,
  } satisfies DownloadPolicy,
} as const;
