/** The runtime's defaults, in one place: every option documented in RuntimeOptions falls back here. */
import type { DownloadPolicy } from './download/index.ts';

/** The runtime's own version: manifests may require a minimum (runtime.minRuntimeVersion). */
export const RUNTIME_VERSION = '0.1.0';

export interface ProviderChoicePolicy {
  /**
   * Timed runs per provider when more than one passes the acceptance test (rounds of one run
   * each, interleaved); 0 serves on the first that passes in the device's order, a software
   * WebGPU adapter last.
   */
  readonly runs: number;
  /** Rounds stop once this much time was spent measuring, after at least 3. */
  readonly budgetMs: number;
  /**
   * A provider later in the device's order serves only when its p50 is this many times faster than
   * the first that passed: a near tie keeps the device's preference (a GPU leaves the CPU free).
   */
  readonly margin: number;
}

export const RUNTIME_DEFAULTS = {
  download: {
    // Twelve attempts with the backoff below keep trying for about three minutes (the whole-download
    // deadline ends it sooner for a small file: 60 s plus the size at 8 KiB/s): a fleet server
    // restarting mid-rollout (seconds under load) must not fail the installs it had started, which
    // would trip the rollout's failure gate. Five (7.5 s) did, in CI.
    attempts: 12,
    initialBackoffMs: 500,
    maxBackoffMs: 30_000,
    // A minute of fixed allowance plus the signed size at 8 KiB/s, the slowest link we still call
    // working: a 5 MB model gets ~11 minutes. A 1 byte/s drip (slow-retrieval attack) hits the deadline.
    deadlineBaseMs: 60_000,
    minBytesPerSecond: 8 * 1024,
  } satisfies DownloadPolicy,
  /** Runs per version of the install-time latency probe (candidate against the version it replaces). */
  latencyProbeRuns: 20,
  telemetry: { enabled: true, windowMs: 60_000, profileEveryMs: 5 },
  // Ten rounds give a stable median of a sub-millisecond model; the budget caps what a slow
  // provider (SwiftShader at 525 ms a run) costs an install; 1.2x is above the run-to-run noise
  // measured here (bench:runtime's control column, within ±5%).
  providerChoice: { runs: 10, budgetMs: 3_000, margin: 1.2 } satisfies ProviderChoicePolicy,
} as const;

/** `given` over `defaults`, field by field; a field given as undefined keeps its default. */
export function withDefaults<T extends object>(defaults: T, given: Partial<T> | undefined): T {
  const merged = { ...defaults };
  for (const [key, value] of Object.entries(given ?? {})) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  }
  return merged;
}
