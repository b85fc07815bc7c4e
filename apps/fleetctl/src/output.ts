/**
 * How fleetctl prints: `-o table` (default, for people), `-o json` / `--json` (machine-stable: the
 * API's own objects, lists as arrays), `-o yaml`. Colour and progress only on a terminal, never
 * with NO_COLOR or --no-color; messages for people go to stderr, data to stdout.
 */
import pc from 'picocolors';
import { stringify as toYaml } from 'yaml';
import { CliError, EXIT } from './exit.ts';

export type Format = 'table' | 'json' | 'yaml';

export interface Io {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
}

export interface Output {
  readonly format: Format;
  readonly colors: ReturnType<typeof pc.createColors>;
  /** Progress bars and live redraws: only when stderr is a terminal. */
  readonly interactive: boolean;
  /** Prints data: `table()` for people, the value itself as JSON or YAML. */
  print(value: unknown, table: () => string): void;
  /** A message for people (stderr). */
  note(line: string): void;
}

export function formatOf(options: { readonly output?: string; readonly json?: boolean }): Format {
  if (options.json) return 'json';
  const format = options.output ?? 'table';
  if (format !== 'table' && format !== 'json' && format !== 'yaml') {
    throw new CliError(EXIT.usage, `-o ${format}: choose table, json or yaml`);
  }
  return format;
}

export function createOutput(io: Io, options: { readonly output?: string; readonly json?: boolean; readonly color?: boolean }): Output {
  const format = formatOf(options);
  const colour = options.color !== false && !io.env.NO_COLOR && io.stdout.isTTY === true && io.env.TERM !== 'dumb';
  return {
    format,
    colors: pc.createColors(colour),
    interactive: io.stderr.isTTY === true && io.env.CI !== 'true',
    print(value, table) {
      if (format === 'json') io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else if (format === 'yaml') io.stdout.write(toYaml(value));
      else {
        const text = table();
        if (text) io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
      }
    },
    note(line) {
      io.stderr.write(`${line}\n`);
    },
  };
}

/** Columns aligned on their widest cell; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly unknown[])[]): string {
  const cells = [headers, ...rows.map((row) => row.map((cell) => (cell === null || cell === undefined ? '-' : String(cell))))];
  // Colour codes take no room on the screen.
  const esc = String.fromCharCode(27);
  const visible = (text: string) =>
    text
      .split(esc)
      .map((part, i) => (i === 0 ? part : part.replace(/^\[[0-9;]*m/, '')))
      .join('').length;
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => visible(String(row[i] ?? '')))));
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? String(cell) : String(cell) + ' '.repeat((widths[i] ?? 0) - visible(String(cell)) + 2)))
        .join('')
        .trimEnd(),
    )
    .join('\n');
}

/** `key: value` lines for one object. */
export function fields(pairs: readonly (readonly [string, unknown])[]): string {
  const width = Math.max(...pairs.map(([key]) => key.length));
  return pairs
    .map(([key, value]) => `${`${key}:`.padEnd(width + 2)}${value === null || value === undefined ? '-' : String(value)}`)
    .join('\n');
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (seconds < 0) return `in ${duration(-seconds)}`;
  return `${duration(seconds)} ago`;
}

export function duration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** `90s`, `15m`, `12h`, `30d` → seconds. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new CliError(EXIT.usage, `${flag} ${text}: give a duration such as 90s, 15m, 12h or 30d`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** Every item of an async iterable, optionally at most `limit`. */
export async function collect<T>(items: AsyncIterable<T>, limit = Number.POSITIVE_INFINITY): Promise<T[]> {
  const all: T[] = [];
  if (limit <= 0) return all;
  for await (const item of items) {
    all.push(item);
    if (all.length >= limit) break;
  }
  return all;
}
