/**
 * Verified artifact download: the bytes go from the source to the store's writer and the hasher
 * in one pass (never buffered twice), bounded by the signed size (endless-data attack) and by a
 * whole-download deadline (slow-retrieval attack), resumed with HTTP Range after a cut connection,
 * retried with exponential backoff, with progress events. Nothing is committed here: the caller
 * commits only after `downloadArtifact` resolves, and aborts the writer when it throws.
 */
import { EdgefleetError } from '@edgefleet/protocol';
import type { Hasher, HasherFactory } from '../hash/index.ts';
import type { ArtifactWriter } from '../store/types.ts';

/** Where artifact bytes come from: bytes in memory, a stream, or an HTTP(S) URL. */
export type ArtifactSource =
  | Uint8Array
  | ArrayBuffer
  | string
  | URL
  | { readonly url: string | URL; readonly headers?: Readonly<Record<string, string>> }
  | ReadableStream<Uint8Array>;

export interface DownloadProgress {
  readonly bytes: number;
  readonly total: number;
}

export interface DownloadPolicy {
  /** Attempts per download, the first included. */
  readonly attempts: number;
  /** First retry delay; doubles per attempt up to maxBackoffMs, with full jitter. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  /**
   * Deadline for the whole download, all attempts included: a fixed allowance plus the time the
   * signed size takes at the slowest rate still considered a working link.
   */
  readonly deadlineBaseMs: number;
  readonly minBytesPerSecond: number;
}

export interface DownloadOptions {
  readonly sha256: string;
  readonly size: number;
  readonly openWriter: () => Promise<ArtifactWriter>;
  readonly createHasher: HasherFactory;
  readonly policy: DownloadPolicy;
  readonly fetch?: typeof globalThis.fetch;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: DownloadProgress) => void;
  /** What is being downloaded, for messages: "silero-vad@5.0.0 model". */
  readonly label: string;
}

interface Sink {
  writer: ArtifactWriter;
  hasher: Hasher;
  received: number;
}

/** Downloads and verifies; resolves with a writer holding exactly the signed bytes, not yet committed. */
export async function downloadArtifact(source: ArtifactSource, options: DownloadOptions): Promise<ArtifactWriter> {
  const deadlineMs = Math.ceil(options.policy.deadlineBaseMs + (options.size / options.policy.minBytesPerSecond) * 1000);
  const deadline = AbortSignal.timeout(deadlineMs);
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
  const sink: Sink = { writer: await options.openWriter(), hasher: options.createHasher(), received: 0 };
  try {
    if (isUrlSource(source)) await fetchInto(source, sink, options, signal, deadline, deadlineMs);
    else await readInto(toStream(source as Uint8Array | ArrayBuffer | ReadableStream<Uint8Array>), sink, options, signal);
    if (signal.aborted) throw abortError(options, deadline, deadlineMs);
    if (sink.received < options.size) {
      throw new EdgefleetError('EF_DOWNLOAD_INCOMPLETE', `${options.label}: got ${sink.received} of ${options.size} bytes`, {
        details: { received: sink.received, size: options.size },
      });
    }
    const digest = sink.hasher.digest();
    if (digest !== options.sha256) {
      throw new EdgefleetError('EF_ARTIFACT_HASH_MISMATCH', `${options.label}: sha256 is ${digest}, the manifest signs ${options.sha256}`, {
        details: { expected: options.sha256, actual: digest },
      });
    }
    return sink.writer;
  } catch (error) {
    await sink.writer.abort();
    throw error;
  }
}

function isUrlSource(source: ArtifactSource): source is string | URL | { url: string | URL; headers?: Readonly<Record<string, string>> } {
  return typeof source === 'string' || source instanceof URL || (typeof source === 'object' && source !== null && 'url' in source);
}

function toStream(source: Uint8Array | ArrayBuffer | ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  if (source instanceof ReadableStream) return source;
  const bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

/** Reads a stream into the sink, refusing anything past the signed size as soon as it arrives. */
async function readInto(stream: ReadableStream<Uint8Array>, sink: Sink, options: DownloadOptions, signal: AbortSignal): Promise<void> {
  const reader = stream.getReader();
  const onAbort = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (signal.aborted) return;
      const { done, value } = await reader.read();
      if (done) return;
      if (sink.received + value.length > options.size) {
        throw new EdgefleetError('EF_DOWNLOAD_TOO_LARGE', `${options.label}: more than the signed ${options.size} bytes arrived`, {
          details: { size: options.size, received: sink.received + value.length },
        });
      }
      sink.hasher.update(value);
      await sink.writer.write(value);
      sink.received += value.length;
      options.onProgress?.({ bytes: sink.received, total: options.size });
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}

async function fetchInto(
  source: string | URL | { url: string | URL; headers?: Readonly<Record<string, string>> },
  sink: Sink,
  options: DownloadOptions,
  signal: AbortSignal,
  deadline: AbortSignal,
  deadlineMs: number,
): Promise<void> {
  const url = typeof source === 'string' || source instanceof URL ? source : source.url;
  const baseHeaders = typeof source === 'object' && 'headers' in source ? (source.headers ?? {}) : {};
  const fetchImpl = options.fetch ?? globalThis.fetch;
  let lastProblem = 'no attempt made';
  for (let attempt = 1; attempt <= options.policy.attempts; attempt++) {
    if (attempt > 1) await sleep(backoff(options.policy, attempt), signal);
    if (signal.aborted) throw abortError(options, deadline, deadlineMs);
    const headers: Record<string, string> = { ...baseHeaders };
    if (sink.received > 0) headers.range = `bytes=${sink.received}-`;
    try {
      const response = await fetchImpl(url, { headers, signal, cache: 'no-store' });
      if (!(await acceptResponse(response, sink, options))) {
        lastProblem = `HTTP ${response.status}`;
        if (!retryable(response.status)) break;
        continue;
      }
      if (!response.body) throw new Error('response has no body');
      await readInto(response.body, sink, options, signal);
      if (sink.received >= options.size) return;
      lastProblem = `connection closed after ${sink.received} of ${options.size} bytes`;
    } catch (error) {
      if (error instanceof EdgefleetError) throw error;
      if (signal.aborted) throw abortError(options, deadline, deadlineMs);
      lastProblem = (error as Error).message;
    }
  }
  if (sink.received > 0 && sink.received < options.size) {
    throw new EdgefleetError('EF_DOWNLOAD_INCOMPLETE', `${options.label}: got ${sink.received} of ${options.size} bytes (${lastProblem})`, {
      details: { received: sink.received, size: options.size },
    });
  }
  throw new EdgefleetError('EF_DOWNLOAD_FAILED', `${options.label}: ${lastProblem} after ${options.policy.attempts} attempt(s)`, {
    details: { url: String(url), problem: lastProblem },
  });
}

/**
 * Decides whether a response continues the download. A 206 must start exactly where we are; a 200
 * (server ignored Range, or first attempt) restarts from zero. A declared length above the signed
 * size is refused before a byte is read.
 */
async function acceptResponse(response: Response, sink: Sink, options: DownloadOptions): Promise<boolean> {
  if (response.status === 206 && sink.received > 0) {
    const start = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')?.[1];
    if (Number(start) === sink.received) return true;
    await response.body?.cancel();
    throw new EdgefleetError(
      'EF_DOWNLOAD_FAILED',
      `${options.label}: resumed at the wrong offset (${response.headers.get('content-range')})`,
    );
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    return false;
  }
  const length = Number(response.headers.get('content-length') ?? Number.NaN);
  if (length > options.size) {
    await response.body?.cancel().catch(() => undefined);
    throw new EdgefleetError(
      'EF_DOWNLOAD_TOO_LARGE',
      `${options.label}: the server announces ${length} bytes, the manifest signs ${options.size}`,
      {
        details: { size: options.size, announced: length },
      },
    );
  }
  if (sink.received > 0) {
    // The server ignored our Range: start over with fresh state.
    await sink.writer.abort();
    sink.writer = await options.openWriter();
    sink.hasher = options.createHasher();
    sink.received = 0;
  }
  return true;
}

function retryable(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

function backoff(policy: DownloadPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (attempt - 2));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function abortError(options: DownloadOptions, deadline: AbortSignal, deadlineMs: number): EdgefleetError {
  if (deadline.aborted) {
    return new EdgefleetError('EF_DOWNLOAD_TIMEOUT', `${options.label}: not finished within ${Math.round(deadlineMs / 1000)} s`, {
      details: { deadlineMs },
    });
  }
  return new EdgefleetError('EF_DOWNLOAD_FAILED', `${options.label}: cancelled`);
}
