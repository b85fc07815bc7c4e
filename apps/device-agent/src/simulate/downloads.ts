/**
 * Downloads for thousands of simulated devices in one process: node:http with keep-alive (a
 * fraction of what fetch costs per small download), a bound on how many are in flight (file
 * descriptors are finite), Range resume after a cut, and the sha256 checked as the bytes arrive.
 * Errors carry the runtime's codes.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent, get as httpGet, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, get as httpsGet } from 'node:https';
import { EdgefleetError } from '@edgefleet/protocol';

export interface DownloadRequest {
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly sha256: string;
  readonly size: number;
  /** The link drops half-way through the first attempt (then resumes with Range). */
  readonly dropFirst?: boolean;
  /** Keep and return the bytes (small files only). */
  readonly keep?: boolean;
  readonly onProgress?: (bytes: number) => void;
}

export interface Downloader {
  download(request: DownloadRequest): Promise<Uint8Array | undefined>;
  close(): void;
}

/** The answers that are tried again (the server is coming back). */
const RETRIED_STATUS = new Set([502, 503, 504]);

export function createDownloader(options: {
  readonly https: boolean;
  readonly concurrency: number;
  /** Attempts at one download (default 12), and the longest pause between two (default 2 s; 100 ms doubling up to it). */
  readonly attempts?: number;
  readonly maxPauseMs?: number;
}): Downloader {
  const ATTEMPTS = options.attempts ?? 12;
  const maxPauseMs = options.maxPauseMs ?? 2000;
  const agent = new (options.https ? HttpsAgent : HttpAgent)({ keepAlive: true, maxSockets: options.concurrency });
  const get = (url: string, headers: Record<string, string>) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const request = (url.startsWith('https:') ? httpsGet : httpGet)(url, { agent, headers, timeout: 60_000 }, resolve);
      request.on('timeout', () => request.destroy(new EdgefleetError('EF_DOWNLOAD_TIMEOUT', `${url}: no answer in 60 s`)));
      request.on('error', reject);
    });
  let slots = options.concurrency;
  const waiting: (() => void)[] = [];
  const acquire = (): Promise<void> => {
    if (slots > 0) {
      slots--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => waiting.push(resolve));
  };
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else slots++;
  };

  /**
   * As the runtime does: a connection that fails or drops, or a server answering 502/503/504 (a
   * replica restarting behind its load balancer, a server killed and started again), is tried
   * again, resuming where the bytes stopped, for about 15 s (12 attempts, 100 ms doubling to 2 s).
   * The device holds a download slot only while it talks to the server, never while it waits
   * between attempts: a device backing off does not hold back the others.
   */
  async function once(request: DownloadRequest): Promise<Uint8Array | undefined> {
    const { url, sha256, size } = request;
    const hash = createHash('sha256');
    const kept: Buffer[] = [];
    let received = 0;
    let lastProblem = '';
    for (let attempt = 0; attempt < ATTEMPTS && received < size; attempt++) {
      if (attempt > 0 && lastProblem) await new Promise((resolve) => setTimeout(resolve, Math.min(maxPauseMs, 50 * 2 ** attempt)));
      await acquire();
      try {
        let response: IncomingMessage;
        try {
          response = await get(url, { ...request.headers, ...(received > 0 ? { range: `bytes=${received}-` } : {}) });
        } catch (error) {
          if (error instanceof EdgefleetError) throw error;
          lastProblem = (error as Error).message;
          continue;
        }
        if (RETRIED_STATUS.has(response.statusCode ?? 0)) {
          response.resume();
          lastProblem = `HTTP ${response.statusCode}`;
          continue;
        }
        if (response.statusCode !== 200 && response.statusCode !== 206) {
          response.resume();
          throw new EdgefleetError('EF_DOWNLOAD_FAILED', `${url}: HTTP ${response.statusCode}`);
        }
        try {
          await consume(response, attempt);
          lastProblem = '';
        } catch (error) {
          if (error instanceof EdgefleetError) throw error;
          lastProblem = (error as Error).message;
        }
      } finally {
        release();
      }
    }
    if (received !== size && lastProblem) {
      throw new EdgefleetError('EF_DOWNLOAD_FAILED', `${url}: ${lastProblem} after ${ATTEMPTS} attempts`);
    }
    if (received !== size) throw new EdgefleetError('EF_DOWNLOAD_INCOMPLETE', `${url}: got ${received} of ${size} bytes`);
    const digest = hash.digest('hex');
    if (digest !== sha256) {
      throw new EdgefleetError('EF_ARTIFACT_HASH_MISMATCH', `${url}: sha256 ${digest.slice(0, 12)}…, signed ${sha256.slice(0, 12)}…`);
    }
    return request.keep ? new Uint8Array(Buffer.concat(kept)) : undefined;

    async function consume(response: IncomingMessage, attempt: number): Promise<void> {
      for await (const chunk of response as AsyncIterable<Buffer>) {
        received += chunk.length;
        if (received > size) {
          response.destroy();
          throw new EdgefleetError('EF_DOWNLOAD_TOO_LARGE', `${url}: more than the signed ${size} bytes`);
        }
        hash.update(chunk);
        if (request.keep) kept.push(chunk);
        request.onProgress?.(received);
        if (request.dropFirst && attempt === 0 && received >= size / 2) {
          response.destroy(); // the link drops half-way: resume with Range on the next attempt
          break;
        }
      }
    }
  }

  return {
    download: (request) => once(request),
    close: () => agent.destroy(),
  };
}
