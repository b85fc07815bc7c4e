import { EdgefleetError } from '@edgefleet/protocol';

/** Maps a platform storage error (Node errno, DOMException) to EF_STORE_FULL / EF_STORE_UNAVAILABLE. */
export function storeError(operation: string, cause: unknown): EdgefleetError {
  if (cause instanceof EdgefleetError) return cause;
  const code = (cause as { code?: unknown })?.code;
  const name = (cause as { name?: unknown })?.name;
  const message = cause instanceof Error ? cause.message : String(cause);
  if (code === 'ENOSPC' || code === 'EDQUOT' || name === 'QuotaExceededError') {
    return new EdgefleetError('EF_STORE_FULL', `${operation}: ${message}`, { cause, details: { operation } });
  }
  return new EdgefleetError('EF_STORE_UNAVAILABLE', `${operation}: ${message}`, { cause, details: { operation } });
}

/** Runs a storage operation, converting whatever it throws into a coded store error. */
export async function guardStore<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (cause) {
    throw storeError(operation, cause);
  }
}
