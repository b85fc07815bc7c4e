/**
 * The latency probe run at install, after the acceptance test: the candidate and the version it
 * replaces run the same golden-vector inputs, in alternating rounds on the same device at the same
 * moment, so their p95 latencies compare like for like. The ratio candidate/previous is what a
 * rollout's latency gate reads. Inputs the previous version cannot take (a changed signature)
 * leave the ratio out rather than guess.
 */
import { decodeTensor, type GoldenVector } from '@edgefleet/protocol';
import type { Feeds, Outputs } from '../engine/types.ts';

export interface LatencyProbe {
  /** p95 of the candidate's runs, in ms. */
  readonly p95Ms: number;
  /** p95 of the replaced version's runs on the same inputs, in ms (absent: nothing to compare). */
  readonly previousP95Ms?: number;
  /** p95Ms / previousP95Ms. */
  readonly ratio?: number;
  /** Timed runs per version. */
  readonly runs: number;
}

interface Runner {
  run(feeds: Feeds): Promise<Outputs>;
}

/** The inputs of golden vectors as engine feeds. */
export function vectorFeeds(vectors: readonly GoldenVector[]): Feeds[] {
  return vectors.map((vector) => {
    const decoded: Record<string, Feeds[string]> = {};
    for (const input of vector.inputs) {
      const tensor = decodeTensor(input);
      decoded[input.name] = { dtype: tensor.dtype, shape: tensor.shape, data: tensor.data };
    }
    return decoded as Feeds;
  });
}

/** The median (lower middle) of a list of durations. */
export function p50(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(0.5 * sorted.length) - 1)] ?? 0;
}

/** The 95th percentile (nearest rank) of a list of durations. */
export function p95(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)] ?? 0;
}

export async function probeLatency(
  candidate: Runner,
  previous: Runner | undefined,
  vectors: readonly GoldenVector[],
  runs: number,
  clock: () => number = () => performance.now(),
): Promise<LatencyProbe | undefined> {
  if (vectors.length === 0 || runs <= 0) return undefined;
  const feeds = vectorFeeds(vectors);
  const timed = async (runner: Runner, input: Feeds): Promise<number> => {
    const started = clock();
    await runner.run(input);
    return clock() - started;
  };
  // One untimed run each: the first run of a session pays for lazy initialisation.
  await candidate.run(feeds[0] as Feeds);
  let compare = previous;
  try {
    if (compare) await compare.run(feeds[0] as Feeds);
  } catch {
    compare = undefined; // the previous version takes other inputs: no like-for-like comparison
  }
  const mine: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const input = feeds[i % feeds.length] as Feeds;
    // Alternate which goes first so neither always runs on a warmer cache.
    if (compare && i % 2 === 1) theirs.push(await timed(compare, input));
    mine.push(await timed(candidate, input));
    if (compare && i % 2 === 0) theirs.push(await timed(compare, input));
  }
  const p95Ms = p95(mine);
  if (!compare) return { p95Ms, runs };
  const previousP95Ms = p95(theirs);
  return { p95Ms, previousP95Ms, ...(previousP95Ms > 0 ? { ratio: p95Ms / previousP95Ms } : {}), runs };
}
