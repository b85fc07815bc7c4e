/**
 * Every list of the admin API pages the same way: `limit` (1 to 1,000) and an opaque `cursor`;
 * the answer carries `next`, the cursor of the following page, or null on the last one. Pages are
 * keyset pages (WHERE (sort key) after (the last row's), never OFFSET): a row added or removed
 * between two requests neither repeats nor skips another, and page 10,000 costs what page 1 does.
 *
 * A cursor is base64url JSON of the last row's sort key, bound to its list and to the filters it
 * was given for: one from another list or other filters is refused (EF_CURSOR_INVALID) rather than
 * silently giving a wrong page. It carries nothing secret (the sort key of a row the caller saw).
 */
import { createHash } from 'node:crypto';
import { EdgefleetError, fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '@edgefleet/protocol';
import { type Expression, type ExpressionBuilder, type SelectQueryBuilder, type SqlBool, sql } from 'kysely';
import Type, { type TProperties } from 'typebox';

export const MAX_PAGE = 1000;
const CURSOR_VERSION = 1;

/** The `limit` and `cursor` of a list's query string, beside its own filters. */
export function pagedQuery<P extends TProperties>(filters: P) {
  return Type.Object(
    {
      ...filters,
      limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `page size, 1 to ${MAX_PAGE}` })),
      cursor: Type.Optional(Type.String({ maxLength: 1024, pattern: '^[A-Za-z0-9_-]+$', description: 'the "next" of the previous page' })),
    },
    { additionalProperties: false },
  );
}

/** One column of a sort key: its SQL name and direction. */
export interface SortColumn {
  readonly column: string;
  readonly direction: 'asc' | 'desc';
}

export type SortValue = string | number;

export interface PageRequest {
  readonly limit: number;
  /** The sort key of the last row of the previous page, when not the first page. */
  readonly after: readonly SortValue[] | undefined;
  /** Builds the `next` cursor from the sort key of the last row of this page. */
  readonly cursorFor: (key: readonly SortValue[]) => string;
}

/** The filters, as the fingerprint a cursor is bound to. */
function fingerprint(list: string, filters: Readonly<Record<string, unknown>>): string {
  const stable = Object.keys(filters)
    .filter((k) => filters[k] !== undefined && k !== 'limit' && k !== 'cursor')
    .sort()
    .map((k) => [k, filters[k]]);
  return createHash('sha256')
    .update(JSON.stringify([list, stable]))
    .digest('base64url')
    .slice(0, 16);
}

/**
 * Reads `limit` and `cursor` of a list request. `list` names the list (a cursor of another list is
 * refused), `filters` are the request's other query parameters, `width` the sort key's length.
 */
export function pageRequest(
  list: string,
  query: Readonly<Record<string, unknown>> & { readonly limit?: string; readonly cursor?: string },
  width: number,
  defaultLimit = 100,
): PageRequest {
  const limit = query.limit === undefined ? defaultLimit : Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new EdgefleetError(
      'EF_SCHEMA_INVALID',
      `limit must be from 1 to ${MAX_PAGE}, got "${query.limit}"; page with the cursor for more`,
    );
  }
  const bound = fingerprint(list, query);
  let after: SortValue[] | undefined;
  if (query.cursor !== undefined) {
    let decoded: unknown;
    try {
      decoded = JSON.parse(utf8Decode(fromBase64Url(query.cursor)));
    } catch {
      decoded = undefined;
    }
    const parts = decoded as { v?: unknown; f?: unknown; k?: unknown } | undefined;
    const key = parts?.k;
    if (
      parts?.v !== CURSOR_VERSION ||
      parts.f !== bound ||
      !Array.isArray(key) ||
      key.length !== width ||
      !key.every((x) => typeof x === 'string' || (typeof x === 'number' && Number.isFinite(x)))
    ) {
      throw new EdgefleetError('EF_CURSOR_INVALID', `the cursor is not one this list (${list}) gave for these filters`);
    }
    after = key as SortValue[];
  }
  return {
    limit,
    after,
    cursorFor: (key) => toBase64Url(utf8Encode(JSON.stringify({ v: CURSOR_VERSION, f: bound, k: key }))),
  };
}

/**
 * The WHERE condition "sorts after `after`" for a sort key of mixed directions:
 * (a > x) OR (a = x AND b < y) OR (a = x AND b = y AND c > z) ...
 */
// biome-ignore lint/suspicious/noExplicitAny: the condition works on any table's columns
export function after(eb: ExpressionBuilder<any, any>, order: readonly SortColumn[], key: readonly SortValue[]): Expression<SqlBool> {
  const branches = order.map((sort, i) => {
    const equal = order.slice(0, i).map((prior, j) => eb(sql.ref(prior.column), '=', key[j]));
    return eb.and([...equal, eb(sql.ref(sort.column), sort.direction === 'asc' ? '>' : '<', key[i])]);
  });
  return eb.or(branches);
}

/** The page of `rows` (fetched with limit + 1) and the cursor of the next one. */
export function pageOf<Row>(
  rows: readonly Row[],
  page: PageRequest,
  keyOf: (row: Row) => readonly SortValue[],
): { readonly items: Row[]; readonly next: string | null } {
  const items = rows.slice(0, page.limit);
  const last = items.at(-1);
  return { items, next: rows.length > page.limit && last !== undefined ? page.cursorFor(keyOf(last)) : null };
}

/**
 * Orders `select` by the list's sort key, starts after the previous page's last row, and fetches
 * one row more than the page (pageOf tells from it whether a next page exists). The one place a
 * list's order is written, so the ORDER BY and the cursor's key cannot disagree.
 */
export function keysetPage<DB, TB extends keyof DB, O>(
  select: SelectQueryBuilder<DB, TB, O>,
  order: readonly SortColumn[],
  page: PageRequest,
): SelectQueryBuilder<DB, TB, O> {
  let query = select;
  for (const sort of order) query = query.orderBy(sql.ref(sort.column), sort.direction);
  const key = page.after;
  if (key) query = query.where((eb) => after(eb as ExpressionBuilder<DB, TB>, order, key));
  return query.limit(page.limit + 1);
}
