/**
 * Model uploads: a multipart body built as a Blob (a file-backed Blob, e.g. Node's
 * `fs.openAsBlob(path)`, is read lazily: a model of gigabytes is never held in memory), streamed
 * with progress where the platform streams request bodies (Node), and retried under one
 * Idempotency-Key, so a retry after a dropped connection registers the version once.
 */
import { EdgefleetConnectionError, problemOf } from './errors.ts';
import type { operations } from './generated/openapi.ts';

type UploadFields = Omit<
  operations['uploadModelVersion']['requestBody'] extends { content: { 'multipart/form-data': infer F } } ? F : never,
  'model' | 'reference' | 'version'
>;

export interface UploadProgress {
  readonly sent: number;
  readonly total: number;
}

export interface UploadModelVersion {
  readonly name: string;
  readonly version: string;
  /** The .onnx file. */
  readonly model: Blob | Uint8Array;
  readonly fileName?: string;
  /** The JSON fields of the upload: metadata, sampleInputs, goldenVectors, tolerance, telemetry... */
  readonly fields?: Partial<UploadFields>;
  /** A reference dataset: CSV with a header row, or JSON lines. */
  readonly reference?: { readonly data: Blob | Uint8Array | string; readonly fileName: string };
  readonly onProgress?: (progress: UploadProgress) => void;
  /** Default: a new UUID, kept across this upload's retries. */
  readonly idempotencyKey?: string;
  readonly signal?: AbortSignal;
}

function escapeName(name: string): string {
  return name.replaceAll('"', '%22').replaceAll('\r', '%0D').replaceAll('\n', '%0A');
}

/** The multipart body: fields, then the model, then the reference dataset. */
export function multipartBody(upload: UploadModelVersion): { body: Blob; contentType: string } {
  const boundary = `edgefleet-${globalThis.crypto.randomUUID()}`;
  const parts: BlobPart[] = [];
  const field = (name: string, value: string) =>
    parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(name)}"\r\n\r\n${value}\r\n`);
  const file = (name: string, fileName: string, type: string, data: BlobPart) => {
    parts.push(
      `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(name)}"; filename="${escapeName(fileName)}"\r\nContent-Type: ${type}\r\n\r\n`,
      data,
      '\r\n',
    );
  };
  field('version', upload.version);
  for (const [name, value] of Object.entries(upload.fields ?? {})) {
    if (value !== undefined) field(name, typeof value === 'string' ? value : JSON.stringify(value));
  }
  file('model', upload.fileName ?? 'model.onnx', 'application/octet-stream', upload.model as BlobPart);
  if (upload.reference) {
    const fileName = upload.reference.fileName;
    const type = /\.jsonl?$/i.test(fileName) || /\.ndjson$/i.test(fileName) ? 'application/x-ndjson' : 'text/csv';
    file('reference', fileName, type, upload.reference.data as BlobPart);
  }
  parts.push(`--${boundary}--\r\n`);
  return { body: new Blob(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

const streamsRequests = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** One attempt's body: the Blob itself, or (with progress, on Node) a stream that counts what it sends. */
function attemptBody(body: Blob, onProgress: ((p: UploadProgress) => void) | undefined): { body: BodyInit; duplex?: 'half' } {
  if (!onProgress || !streamsRequests) return { body };
  let sent = 0;
  const total = body.size;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      sent += chunk.byteLength;
      onProgress({ sent, total });
      controller.enqueue(chunk);
    },
  });
  return { body: body.stream().pipeThrough(counter), duplex: 'half' };
}

export async function uploadModelVersion(
  upload: UploadModelVersion,
  client: {
    readonly baseUrl: string;
    readonly headers: Record<string, string>;
    readonly fetch: typeof globalThis.fetch;
    readonly retries: number;
  },
): Promise<operations['uploadModelVersion']['responses'][201]['content']['application/json']> {
  const { body, contentType } = multipartBody(upload);
  const key = upload.idempotencyKey ?? globalThis.crypto.randomUUID();
  const url = `${client.baseUrl}/v1/models/${encodeURIComponent(upload.name)}/versions`;
  for (let attempt = 0; ; attempt++) {
    const last = attempt >= client.retries;
    let response: Response;
    try {
      const fetch = client.fetch; // called unbound: a browser's fetch refuses another `this`
      response = await fetch(url, {
        method: 'POST',
        headers: { ...client.headers, 'content-type': contentType, 'idempotency-key': key },
        ...attemptBody(body, upload.onProgress),
        ...(upload.signal ? { signal: upload.signal } : {}),
      } as RequestInit);
    } catch (error) {
      if (upload.signal?.aborted || last) throw last ? new EdgefleetConnectionError(url, error) : error;
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      continue;
    }
    if (!last && [408, 429, 502, 503, 504].includes(response.status)) {
      await response.body?.cancel();
      const after = Number(response.headers.get('retry-after'));
      await new Promise((resolve) => setTimeout(resolve, Number.isFinite(after) && after > 0 ? after * 1000 : 250 * 2 ** attempt));
      continue;
    }
    if (!response.ok) throw await problemOf(response);
    upload.onProgress?.({ sent: body.size, total: body.size });
    return (await response.json()) as operations['uploadModelVersion']['responses'][201]['content']['application/json'];
  }
}
