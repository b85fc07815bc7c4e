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
  'model' | 'reference' | 'version' | 'evaluation' | 'variant.NAME'
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
  /** A labelled held-out dataset the version is evaluated on at once (CSV, JSON lines or .npz); give `fields.evaluationTask` too. */
  readonly evaluation?: { readonly data: Blob | Uint8Array | string; readonly fileName: string };
  /**
   * Other builds of the same model (float16, int8...), by variant name: sent as parts
   * "variant.<name>", their settings in `fields.variants`. `fields.quantize: "int8"` has the server
   * build the int8 one instead.
   */
  readonly variants?: Readonly<Record<string, Blob | Uint8Array>>;
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
  for (const [name, data] of Object.entries(upload.variants ?? {})) {
    file(`variant.${name}`, `${name}.onnx`, 'application/octet-stream', data as BlobPart);
  }
  if (upload.evaluation)
    file('evaluation', upload.evaluation.fileName, datasetType(upload.evaluation.fileName), upload.evaluation.data as BlobPart);
  parts.push(`--${boundary}--\r\n`);
  return { body: new Blob(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

function datasetType(fileName: string): string {
  if (/\.csv$/i.test(fileName)) return 'text/csv';
  if (/\.(jsonl|ndjson)$/i.test(fileName)) return 'application/x-ndjson';
  return 'application/octet-stream';
}

type EvaluationTask = operations['evaluateVersion']['requestBody'] extends { content: { 'multipart/form-data': { task: infer T } } }
  ? T
  : never;
type Evaluation = operations['getEvaluation']['responses'][200]['content']['application/json'];

export interface EvaluateVersion {
  readonly name: string;
  readonly version: string;
  /** Labelled held-out data: CSV, JSON lines or .npz (the file name says which). */
  readonly dataset: { readonly data: Blob | Uint8Array | string; readonly fileName: string };
  readonly task: EvaluationTask;
  /** The variant to evaluate (default the reference, which evaluates every variant beside it). */
  readonly variant?: string;
  readonly onProgress?: (progress: UploadProgress) => void;
  readonly idempotencyKey?: string;
  readonly signal?: AbortSignal;
}

/** The multipart body of an evaluation: the task, then the dataset. */
export function evaluationBody(request: EvaluateVersion): { body: Blob; contentType: string } {
  const boundary = `edgefleet-${globalThis.crypto.randomUUID()}`;
  const fileName = request.dataset.fileName;
  const body = new Blob([
    `--${boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\n${JSON.stringify(request.task)}\r\n`,
    ...(request.variant !== undefined
      ? [`--${boundary}\r\nContent-Disposition: form-data; name="variant"\r\n\r\n${request.variant}\r\n`]
      : []),
    `--${boundary}\r\nContent-Disposition: form-data; name="dataset"; filename="${escapeName(fileName)}"\r\nContent-Type: ${datasetType(fileName)}\r\n\r\n`,
    request.dataset.data as BlobPart,
    `\r\n--${boundary}--\r\n`,
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
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

interface ClientOptions {
  readonly baseUrl: string;
  readonly headers: Record<string, string>;
  readonly fetch: typeof globalThis.fetch;
  readonly retries: number;
}

export async function uploadModelVersion(
  upload: UploadModelVersion,
  client: ClientOptions,
): Promise<operations['uploadModelVersion']['responses'][201]['content']['application/json']> {
  const url = `${client.baseUrl}/v1/models/${encodeURIComponent(upload.name)}/versions`;
  return postMultipart(url, multipartBody(upload), upload, client);
}

/** Starts an evaluation of a version on a labelled dataset (or answers the one of the same dataset and task). */
export async function evaluateVersion(request: EvaluateVersion, client: ClientOptions): Promise<Evaluation> {
  const url = `${client.baseUrl}/v1/models/${encodeURIComponent(request.name)}/versions/${encodeURIComponent(request.version)}/evaluations`;
  return postMultipart(url, evaluationBody(request), request, client);
}

async function postMultipart<T>(
  url: string,
  { body, contentType }: { body: Blob; contentType: string },
  upload: { readonly idempotencyKey?: string; readonly signal?: AbortSignal; readonly onProgress?: (progress: UploadProgress) => void },
  client: ClientOptions,
): Promise<T> {
  const key = upload.idempotencyKey ?? globalThis.crypto.randomUUID();
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
    return (await response.json()) as T;
  }
}
