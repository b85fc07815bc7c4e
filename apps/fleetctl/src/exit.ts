/**
 * fleetctl's exit codes (docs/fleetctl.md): scripts tell a refusal from an outage from a missing
 * thing without parsing messages.
 */
import { EdgefleetApiError, EdgefleetConnectionError, ERROR_DEFINITIONS, type ErrorCode } from '@edgefleet/client';

export const EXIT = {
  ok: 0,
  /** Something unexpected; a bug to report. */
  failure: 1,
  /** The command line is wrong: unknown command or option, bad value, missing --yes. */
  usage: 2,
  /** Not logged in, a token unknown, expired or revoked, or without the scope needed. */
  auth: 3,
  /** The model, version, device, token or rollout does not exist. */
  notFound: 4,
  /** The server refused the request as it stands: invalid, conflicting, changed meanwhile, rate-limited. */
  refused: 5,
  /** The server cannot be reached, or failed. */
  unavailable: 6,
  /** `rollouts watch`: the rollout rolled back. */
  rolledBack: 10,
  /** `rollouts watch`: the rollout was aborted. */
  aborted: 11,
  /** `rollouts watch --exit-on-pause`: the rollout paused. */
  paused: 12,
  /** `rollouts watch --timeout`: still running when the time ran out. */
  timeout: 13,
} as const;

/** An error fleetctl expected: printed as it is, with its exit code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  if (error instanceof EdgefleetConnectionError) return EXIT.unavailable;
  if (error instanceof EdgefleetApiError) {
    if (error.status === 401 || error.status === 403) return EXIT.auth;
    if (error.status === 404) return EXIT.notFound;
    if (error.status >= 500) return EXIT.unavailable;
    return EXIT.refused;
  }
  return EXIT.failure;
}

/** What to print for an error: the EF_ code, what happened, and what to do. */
export function describeError(error: unknown): string {
  if (error instanceof EdgefleetApiError) {
    const definition = ERROR_DEFINITIONS[error.code as ErrorCode];
    const lines = [`error: ${error.code}: ${error.detail}`];
    if (definition) lines.push(`  fix: ${definition.fix}`);
    if (error.instance) lines.push(`  request: ${error.instance}`);
    return lines.join('\n');
  }
  if (error instanceof Error) return `error: ${error.message}`;
  return `error: ${String(error)}`;
}
