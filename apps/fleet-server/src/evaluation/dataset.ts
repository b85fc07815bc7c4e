/**
 * Evaluation datasets: labelled held-out samples in the shape of a model's inputs, read in
 * batches so memory stays one batch whatever the file's size.
 *
 * - CSV with a header row, or JSON lines with one object per sample: tabular data. Every column
 *   but the label feeds the model's single input, in the file's column order (a JSON line may
 *   instead hold `"inputs": {"<input name>": [nested arrays]}`, one entry per model input).
 * - `.npz` (np.savez / np.savez_compressed) or `.npy`: tensors, for images, audio, sequences:
 *   one array per model input, named as the input, whose first axis is the sample, plus the
 *   labels as an array named like the label column (default `label`).
 *
 * Rows are checked against the model's declared input shapes; what does not fit is refused with
 * the sample's number and what was expected.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { EdgefleetError, type TensorSpec } from '@edgefleet/protocol';
import { parse } from 'csv-parse';
import { type NpyArray, type NpzFile, openNpz } from './npz.ts';

export type EvaluationFormat = 'csv' | 'jsonl' | 'npz' | 'npy';
export const EVALUATION_FORMATS: readonly EvaluationFormat[] = ['csv', 'jsonl', 'npz', 'npy'];

/**
 * One batch: per input, the rows' values one after another, each row's shape, and the shape they
 * share (empty when they differ: such rows run one by one).
 */
export interface SampleBatch {
  readonly labels: (string | number)[];
  readonly inputs: Map<string, BatchInput>;
}
export interface BatchInput {
  values: number[];
  rowShape: number[];
  shapes: number[][];
}

export interface EvaluationDataset {
  /** Samples in the file when known before reading it (tensor files); undefined for text. */
  readonly total: number | undefined;
  /** How far reading has got, 0..1 (bytes for text files, samples for tensor files). */
  progress(): number;
  batches(size: number): AsyncGenerator<SampleBatch>;
  close(): Promise<void>;
}

/** The format from a file name or media type; undefined when neither says. */
export function evaluationFormat(fileName: string | undefined, mediaType: string | undefined): EvaluationFormat | undefined {
  const type = (mediaType ?? '').split(';')[0]?.trim().toLowerCase();
  const name = (fileName ?? '').toLowerCase();
  if (name.endsWith('.csv') || type === 'text/csv') return 'csv';
  if (/\.(jsonl|ndjson)$/.test(name) || type === 'application/x-ndjson' || type === 'application/jsonl') return 'jsonl';
  if (name.endsWith('.npz')) return 'npz';
  if (name.endsWith('.npy')) return 'npy';
  return undefined;
}

/** The deepest nesting a JSON-lines input may have (tensors of higher rank are not models' inputs). */
const MAX_RANK = 8;
/** The longest row a text dataset may have: one sample, not the whole file on one line. */
export const MAX_ROW_BYTES = 64 * 1024 * 1024;

function invalid(message: string, details?: Record<string, unknown>): EdgefleetError {
  return new EdgefleetError('EF_DATASET_INVALID', message, details ? { details } : undefined);
}

/** Shape of nested arrays of numbers ([[1,2],[3,4]] → [2,2]); flattened values pushed to `into`. */
function flatten(value: unknown, into: number[], where: string, depth = 0): number[] {
  if (depth > MAX_RANK) throw invalid(`${where}: nested deeper than ${MAX_RANK} levels (a tensor of rank ${MAX_RANK} at most)`);
  if (typeof value === 'number' || typeof value === 'boolean') {
    into.push(Number(value));
    return [];
  }
  if (!Array.isArray(value)) throw invalid(`${where}: expected numbers or nested arrays of numbers`);
  let inner: number[] | undefined;
  for (const item of value) {
    const shape = flatten(item, into, where, depth + 1);
    if (inner && (inner.length !== shape.length || inner.some((d, i) => d !== shape[i]))) throw invalid(`${where}: ragged nested arrays`);
    inner = shape;
  }
  return [value.length, ...(inner ?? [])];
}

/**
 * Checks one row's shape against the input's declared shape: equal rank (the row is one sample),
 * or one less (the model's first axis is the batch, given 1). Declared sizes must match; symbolic
 * ones take any size.
 */
export function checkRowShape(spec: TensorSpec, rowShape: readonly number[], where: string): void {
  const declared = spec.shape;
  const rest = declared.length === rowShape.length + 1 ? declared.slice(1) : declared;
  const fits = rest.length === rowShape.length && rest.every((d, i) => typeof d !== 'number' || d < 0 || d === rowShape[i]);
  if (!fits) {
    throw invalid(
      `${where}: input "${spec.name}" is declared [${declared.join(', ')}] but a sample is [${rowShape.join(', ')}]; give each sample as [${rest.join(', ')}]`,
    );
  }
}

function tabularInput(inputs: readonly TensorSpec[], format: string): TensorSpec {
  if (inputs.length !== 1) {
    throw invalid(
      `${format} columns feed one input, and this model has ${inputs.length} (${inputs.map((i) => i.name).join(', ')}): use JSON lines with "inputs" or an .npz file`,
    );
  }
  return inputs[0] as TensorSpec;
}

export interface OpenOptions {
  readonly inputs: readonly TensorSpec[];
  /** The label's column (CSV, JSON lines) or array (.npz); default `label`. */
  readonly labelColumn?: string | undefined;
  /** Prefix for temporary files (inflated .npz entries). */
  readonly scratch: string;
  readonly maxInflatedBytes?: number | undefined;
}

export async function openEvaluationDataset(path: string, format: EvaluationFormat, options: OpenOptions): Promise<EvaluationDataset> {
  const label = options.labelColumn ?? 'label';
  if (format === 'npz' || format === 'npy') return tensorDataset(path, format, label, options);
  const { size } = await stat(path);
  let read = 0;
  const source = () => {
    const stream = createReadStream(path);
    stream.on('data', (chunk) => {
      read += chunk.length;
    });
    return stream;
  };
  const progress = () => (size === 0 ? 1 : Math.min(1, read / size));
  if (format === 'csv') {
    const spec = tabularInput(options.inputs, 'CSV');
    return {
      total: undefined,
      progress,
      async *batches(batchSize) {
        const parser = source().pipe(
          parse({ columns: false, skip_empty_lines: true, trim: true, relax_column_count: false, max_record_size: MAX_ROW_BYTES }),
        );
        let header: string[] | undefined;
        let labelAt = -1;
        let batch = emptyBatch();
        let row = 0;
        try {
          for await (const record of parser as AsyncIterable<string[]>) {
            if (!header) {
              header = record;
              labelAt = header.indexOf(label);
              if (labelAt < 0) throw invalid(`the CSV header has no "${label}" column (columns: ${header.slice(0, 20).join(', ')})`);
              if (header.length < 2) throw invalid('the CSV has a label column and no feature column');
              continue;
            }
            row++;
            const values: number[] = [];
            for (const [i, cell] of record.entries()) {
              if (i === labelAt) continue;
              const value = Number(cell);
              if (cell === '' || !Number.isFinite(value)) {
                throw invalid(`CSV row ${row}, column "${header[i]}": "${cell.slice(0, 40)}" is not a number`, { row });
              }
              values.push(value);
            }
            if (row === 1) checkRowShape(spec, [values.length], `CSV row 1 (${values.length} feature columns)`);
            push(batch, spec.name, values, [values.length], record[labelAt] as string);
            if (batch.labels.length >= batchSize) {
              yield batch;
              batch = emptyBatch();
            }
          }
        } catch (error) {
          if (error instanceof EdgefleetError) throw error;
          throw invalid(`the CSV does not parse: ${(error as Error).message.slice(0, 200)}`);
        }
        if (!header) throw invalid('the CSV is empty: it needs a header row and one row per sample');
        if (batch.labels.length > 0) yield batch;
      },
      close: async () => undefined,
    };
  }
  return {
    total: undefined,
    progress,
    async *batches(batchSize) {
      const lines = linesOf(source());
      let batch = emptyBatch();
      let row = 0;
      for await (const line of lines) {
        if (line.trim() === '') continue;
        row++;
        let sample: unknown;
        try {
          sample = JSON.parse(line);
        } catch (error) {
          throw invalid(`JSON line ${row} is not JSON: ${(error as Error).message.slice(0, 120)}`, { row });
        }
        if (typeof sample !== 'object' || sample === null || Array.isArray(sample))
          throw invalid(`JSON line ${row} is not an object`, { row });
        const record = sample as Record<string, unknown>;
        const truth = record[label];
        if (typeof truth !== 'string' && typeof truth !== 'number' && typeof truth !== 'boolean') {
          throw invalid(`JSON line ${row} has no "${label}" (a string, number or boolean)`, { row });
        }
        const labelText = typeof truth === 'boolean' ? (truth ? '1' : '0') : truth;
        if ('inputs' in record) {
          const given = record.inputs as Record<string, unknown> | null;
          if (typeof given !== 'object' || given === null)
            throw invalid(`JSON line ${row}: "inputs" must map input names to arrays`, { row });
          for (const spec of options.inputs) {
            if (!Object.hasOwn(given, spec.name)) throw invalid(`JSON line ${row} has no inputs."${spec.name}"`, { row });
            const values: number[] = [];
            const shape = flatten(given[spec.name], values, `JSON line ${row}, inputs."${spec.name}"`);
            checkRowShape(spec, shape, `JSON line ${row}`);
            push(batch, spec.name, values, shape, labelText, spec === options.inputs[0]);
          }
        } else {
          const spec = tabularInput(options.inputs, 'JSON-lines');
          const values: number[] = [];
          for (const [key, value] of Object.entries(record)) {
            if (key === label) continue;
            if (typeof value !== 'number' || !Number.isFinite(value))
              throw invalid(`JSON line ${row}, "${key}": not a finite number`, { row });
            values.push(value);
          }
          if (row === 1) checkRowShape(spec, [values.length], `JSON line 1 (${values.length} feature columns)`);
          push(batch, spec.name, values, [values.length], labelText);
        }
        if (batch.labels.length >= batchSize) {
          yield batch;
          batch = emptyBatch();
        }
      }
      if (row === 0) throw invalid('the JSON-lines file holds no sample');
      if (batch.labels.length > 0) yield batch;
    },
    close: async () => undefined,
  };
}

/** The lines of a stream, each at most MAX_ROW_BYTES (readline would hold a line of any length). */
async function* linesOf(stream: AsyncIterable<Buffer>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  /** The start of a line whose end has not come yet, in pieces (joined once it ends). */
  let carried: string[] = [];
  let carriedLength = 0;
  for await (const chunk of stream) {
    const text = decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let newline = text.indexOf('\n'); newline >= 0; newline = text.indexOf('\n', start)) {
      const line = carried.length > 0 ? carried.join('') + text.slice(start, newline) : text.slice(start, newline);
      carried = [];
      carriedLength = 0;
      yield line.endsWith('\r') ? line.slice(0, -1) : line;
      start = newline + 1;
    }
    if (start < text.length) {
      carried.push(text.slice(start));
      carriedLength += text.length - start;
      if (carriedLength > MAX_ROW_BYTES) throw invalid(`a JSON line is longer than ${MAX_ROW_BYTES} bytes: one sample per line`);
    }
  }
  const rest = carried.join('') + decoder.decode();
  if (rest.length > 0) yield rest.endsWith('\r') ? rest.slice(0, -1) : rest;
}

function emptyBatch(): SampleBatch {
  return { labels: [], inputs: new Map() };
}

function push(batch: SampleBatch, input: string, values: number[], rowShape: number[], label: string | number, withLabel = true): void {
  let entry = batch.inputs.get(input);
  if (!entry) {
    entry = { values: [], rowShape, shapes: [] };
    batch.inputs.set(input, entry);
  } else if (entry.rowShape.join() !== rowShape.join()) {
    // Rows of different sizes (a symbolic axis) cannot share a batch tensor: the caller runs them one by one.
    entry.rowShape = [];
  }
  for (const v of values) entry.values.push(v);
  entry.shapes.push(rowShape);
  if (withLabel) batch.labels.push(label);
}

async function tensorDataset(path: string, format: 'npz' | 'npy', label: string, options: OpenOptions): Promise<EvaluationDataset> {
  if (format === 'npy') throw invalid('an .npy file holds one array; put the inputs and the labels together in an .npz (np.savez)');
  const file: NpzFile = await openNpz(path, options.scratch, options.maxInflatedBytes);
  try {
    const labels = file.arrays.get(label);
    const names = [...file.arrays.keys()].join(', ') || 'none';
    if (!labels) throw invalid(`the .npz has no "${label}" array (arrays: ${names})`);
    if (labels.rowSize !== 1)
      throw invalid(`the "${label}" array must hold one label per sample; its shape is (${labels.shape.join(', ')})`);
    const total = labels.shape[0] as number;
    const arrays: [TensorSpec, NpyArray][] = options.inputs.map((spec) => {
      const array = file.arrays.get(spec.name);
      if (!array) throw invalid(`the .npz has no array named after input "${spec.name}" (arrays: ${names})`);
      if (array.shape[0] !== total) {
        throw invalid(`"${spec.name}" has ${array.shape[0]} samples and "${label}" ${total}: the first axis counts samples in every array`);
      }
      checkRowShape(spec, array.shape.slice(1), `"${spec.name}"`);
      return [spec, array];
    });
    let done = 0;
    return {
      total,
      progress: () => (total === 0 ? 1 : done / total),
      async *batches(batchSize) {
        for (let from = 0; from < total; from += batchSize) {
          const count = Math.min(batchSize, total - from);
          const inputs = new Map<string, BatchInput>();
          for (const [spec, array] of arrays) {
            const rowShape = array.shape.slice(1);
            inputs.set(spec.name, { values: await array.rows(from, count), rowShape, shapes: new Array(count).fill(rowShape) });
          }
          const values = await labels.rows(from, count);
          done = from + count;
          yield { labels: values, inputs };
        }
      },
      close: () => file.close(),
    };
  } catch (error) {
    await file.close();
    throw error;
  }
}
