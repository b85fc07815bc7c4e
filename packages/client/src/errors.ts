/** The errors the client throws: the server's problems by their EF_ code, and unreachable servers. */
import type { ErrorCode } from './generated/errors.ts';
import type { components } from './generated/openapi.ts';

type Problem = components['schemas']['Problem'];

/** A problem answer (4xx, 5xx) of the server: `code` is its stable EF_ code. */
export class EdgefleetApiError extends Error {
  override readonly name = 'EdgefleetApiError';
  readonly status: number;
  readonly code: ErrorCode | (string & {});
  readonly title: string;
  readonly detail: string;
  /** `urn:uuid:<request id>`, the id in the server's log. */
  readonly instance: string | undefined;
  readonly problem: Problem | undefined;

  constructor(status: number, problem: Partial<Problem> | undefined, fallback: string) {
    const detail = problem?.detail ?? fallback;
    super(`${problem?.code ?? `HTTP ${status}`}: ${detail}`);
    this.status = status;
    this.code = problem?.code ?? (status === 404 ? 'EF_NOT_FOUND' : 'EF_INTERNAL_ERROR');
    this.title = problem?.title ?? `HTTP ${status}`;
    this.detail = detail;
    this.instance = problem?.instance;
    this.problem = problem as Problem | undefined;
  }
}

/** The server could not be reached (refused, reset, timed out) after the retries. */
export class EdgefleetConnectionError extends Error {
  override readonly name = 'EdgefleetConnectionError';
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(
      `cannot reach ${new URL(url).origin}: ${cause instanceof Error ? (cause.cause instanceof Error ? cause.cause.message : cause.message) : String(cause)}`,
      {
        cause,
      },
    );
  }
}

/** Is `error` an API error, optionally with this code? */
export function isApiError(error: unknown, code?: ErrorCode): error is EdgefleetApiError {
  return error instanceof EdgefleetApiError && (code === undefined || error.code === code);
}

/** Turns a problem answer into an EdgefleetApiError. */
export async function problemOf(response: Response): Promise<EdgefleetApiError> {
  const text = await response.text().catch(() => '');
  let problem: Partial<Problem> | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object') problem = parsed as Partial<Problem>;
  } catch {
    problem = undefined;
  }
  return new EdgefleetApiError(response.status, problem, text.slice(0, 500) || response.statusText || `HTTP ${response.status}`);
}
