/**
 * A reference dataset (CSV with a header row, or JSON lines) turned into a version's reference
 * profile: each column is one telemetry feature, by name, profiled exactly as devices profile it
 * (same sketches, so the comparison is like for like). The file is streamed: memory stays the size
 * of the profiles, whatever the number of rows.
 *
 * Columns and features: when the manifest declares telemetry features, every column must be one
 * of them (a typo would otherwise never be compared) and takes its type from the declaration;
 * categorical codes are mapped to their labels as devices do. Without declared features, columns
 * are named like the default features (`<tensor>.mean`, `<output>.class`...) and a column is
 * numeric when every value in it is a number.
 */
import { createInterface } from 'node:readline';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { categoricalProfile, type FeatureProfile, numericProfile, observe, toWire, type WireProfile } from '@edgefleet/drift';
import { EdgefleetError, type TelemetrySpec } from '@edgefleet/protocol';
import { parse } from 'csv-parse';

export type DatasetFormat = 'csv' | 'jsonl';

export interface DatasetProfile {
  readonly rows: number;
  readonly features: { name: string; profile: WireProfile }[];
}

/** The format from a file name or media type; undefined when neither says. */
export function datasetFormat(fileName: string | undefined, mediaType: string | undefined): DatasetFormat | undefined {
  const type = (mediaType ?? '').split(';')[0]?.trim().toLowerCase();
  if (/\.csv$/i.test(fileName ?? '') || type === 'text/csv') return 'csv';
  if (/\.(jsonl|ndjson)$/i.test(fileName ?? '') || type === 'application/x-ndjson' || type === 'application/jsonl') return 'jsonl';
  return undefined;
}

function invalid(message: string): EdgefleetError {
  return new EdgefleetError('EF_REFERENCE_INVALID', message);
}

/** Counts bytes through and fails the stream past the limit. */
function limitBytes(maxBytes: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (seen > maxBytes) {
        callback(
          new EdgefleetError(
            'EF_MESSAGE_TOO_LARGE',
            `the reference dataset is larger than ${maxBytes} bytes (EDGEFLEET_MAX_REFERENCE_BYTES)`,
            { details: { limit: maxBytes } },
          ),
        );
      } else callback(null, chunk);
    },
  });
}

interface Column {
  readonly declared?: { readonly type: 'numeric' | 'categorical'; readonly labels?: readonly string[] };
  numeric: FeatureProfile;
  categorical: FeatureProfile;
  /** An undeclared column stays numeric until a value is not a number. */
  numbersOnly: boolean;
}

function declaredTypes(spec: TelemetrySpec | undefined): Map<string, Column['declared']> | undefined {
  if (!spec || spec.features.length === 0) return undefined;
  return new Map(
    spec.features.map((f) => [
      f.name,
      {
        type: f.kind === 'class' || (f.kind === 'column' && f.type === 'categorical') ? 'categorical' : 'numeric',
        ...(f.labels ? { labels: f.labels } : {}),
      },
    ]),
  );
}

/**
 * Profiles a dataset, row by row. Refuses (EF_REFERENCE_INVALID, naming the row and column) a
 * column the manifest does not declare, a non-number in a numeric column, a malformed CSV row or
 * JSON line, and a dataset without rows; EF_MESSAGE_TOO_LARGE past `maxBytes`.
 */
export async function profileDataset(
  source: Readable,
  options: { format: DatasetFormat; maxBytes: number; telemetry?: TelemetrySpec },
): Promise<DatasetProfile> {
  const declared = declaredTypes(options.telemetry);
  const columns = new Map<string, Column>();
  let rows = 0;

  function column(name: string, row: number): Column {
    let found = columns.get(name);
    if (found) return found;
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$/.test(name)) {
      throw invalid(`column "${name.slice(0, 64)}" (row ${row}) is not a feature name: 1-128 characters from A-Z a-z 0-9 _ . : / -`);
    }
    const type = declared?.get(name);
    if (declared && !type) {
      throw invalid(`column "${name}" is not a telemetry feature of this model; its features are ${[...declared.keys()].join(', ')}`);
    }
    if (columns.size >= 1024) throw invalid('the dataset has more than 1024 columns');
    found = { ...(type ? { declared: type } : {}), numeric: numericProfile(), categorical: categoricalProfile(), numbersOnly: true };
    columns.set(name, found);
    return found;
  }

  /** CSV cells are text, so a number is any cell that parses as one; JSON says what is a number. */
  const typed = options.format === 'jsonl';

  function add(record: Record<string, unknown>, row: number): void {
    rows++;
    for (const [name, raw] of Object.entries(record)) {
      const target = column(name, row);
      const missing = raw === null || raw === undefined || raw === '';
      const declaredType = target.declared?.type;
      if (declaredType === 'categorical') {
        const labels = target.declared?.labels;
        const code = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : undefined;
        observe(target.categorical, missing ? null : String((code !== undefined && labels?.[code]) || raw));
        continue;
      }
      if (missing) {
        observe(target.numeric, null);
        observe(target.categorical, null);
        continue;
      }
      const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
      const isNumber = typeof raw === 'number' || (!typed && (!Number.isNaN(value) || raw === 'NaN'));
      if (declaredType === 'numeric' && !isNumber) {
        throw invalid(`row ${row}, column "${name}": "${String(raw).slice(0, 64)}" is not a number, and ${name} is a numeric feature`);
      }
      if (!isNumber) target.numbersOnly = false;
      if (target.numbersOnly) observe(target.numeric, value);
      if (!declaredType) observe(target.categorical, typeof raw === 'object' ? JSON.stringify(raw) : String(raw));
    }
  }

  const input = source.pipe(limitBytes(options.maxBytes));
  source.on('error', (error) => input.destroy(error));
  try {
    if (options.format === 'csv') {
      const parser = input.pipe(parse({ columns: true, bom: true, skip_empty_lines: true, trim: true, max_record_size: 1024 * 1024 }));
      input.on('error', (error) => parser.destroy(error));
      for await (const record of parser as AsyncIterable<Record<string, string>>) add(record, rows + 1);
    } else {
      let line = 0;
      for await (const text of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
        line++;
        if (text.trim() === '') continue;
        let record: unknown;
        try {
          record = JSON.parse(text);
        } catch {
          throw invalid(`line ${line} is not JSON: ${text.slice(0, 64)}`);
        }
        if (typeof record !== 'object' || record === null || Array.isArray(record)) {
          throw invalid(`line ${line} is not a JSON object of feature values`);
        }
        add(record as Record<string, unknown>, line);
      }
    }
  } catch (error) {
    if (error instanceof EdgefleetError) throw error;
    const { code, message } = error as { code?: string; message?: string };
    if (typeof code === 'string' && code.startsWith('CSV_')) throw invalid(`the CSV cannot be parsed: ${message ?? code}`);
    throw error;
  }
  if (rows === 0) throw invalid('the reference dataset has no rows');
  return {
    rows,
    features: [...columns].map(([name, c]) => ({
      name,
      profile: toWire((c.declared?.type ?? (c.numbersOnly ? 'numeric' : 'categorical')) === 'numeric' ? c.numeric : c.categorical),
    })),
  };
}
