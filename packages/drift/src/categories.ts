/**
 * Counts per category for a categorical feature (a class label, a string column). The number of
 * distinct categories kept is bounded: past `limit`, new ones are counted under OTHER, so a
 * feature with unbounded values (an id) cannot grow a profile without end.
 */
export const OTHER = '__other__';

export interface CategoryCounts {
  readonly limit: number;
  counts: Record<string, number>;
}

export function createCategoryCounts(limit = 256): CategoryCounts {
  return { limit, counts: Object.create(null) as Record<string, number> };
}

export function categoryAdd(categories: CategoryCounts, value: string, times = 1): void {
  const known = categories.counts[value] !== undefined;
  const key = known || Object.keys(categories.counts).length < categories.limit ? value : OTHER;
  categories.counts[key] = (categories.counts[key] ?? 0) + times;
}

export function mergeCategoryCounts(a: CategoryCounts, b: CategoryCounts): CategoryCounts {
  const merged = createCategoryCounts(Math.min(a.limit, b.limit));
  // Largest first, so which categories survive the limit does not depend on the merge order.
  const all = new Map<string, number>();
  for (const source of [a.counts, b.counts]) for (const [key, count] of Object.entries(source)) all.set(key, (all.get(key) ?? 0) + count);
  const sorted = [...all].sort((x, y) => (y[1] !== x[1] ? y[1] - x[1] : x[0] < y[0] ? -1 : 1));
  for (const [key, count] of sorted) {
    if (key === OTHER) continue;
    categoryAdd(merged, key, count);
  }
  if (all.has(OTHER)) categoryAdd(merged, OTHER, all.get(OTHER) as number);
  return merged;
}

/** Counts of both, aligned on the union of their categories (for chi-square and Jensen–Shannon). */
export function alignCategories(
  reference: CategoryCounts,
  current: CategoryCounts,
): { categories: string[]; reference: number[]; current: number[] } {
  const categories = [...new Set([...Object.keys(reference.counts), ...Object.keys(current.counts)])].sort();
  return {
    categories,
    reference: categories.map((c) => reference.counts[c] ?? 0),
    current: categories.map((c) => current.counts[c] ?? 0),
  };
}
