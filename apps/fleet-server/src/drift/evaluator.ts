/**
 * Drift as a time series. Every `everyMs`, the windows received since the last pass mark the
 * (model version, time bucket) pairs to score again; each is scored for every device group (each
 * tag of the devices that reported, and `*` for all of them) against the version's reference and
 * stored, one row per (version, group, bucket), replacing an earlier score of the same bucket (late
 * windows from devices that were offline are folded in when they arrive).
 *
 * Alerts: a group whose last K scored buckets all drifted opens an alert (one per version and
 * group at a time: deduplicated), recorded with a webhook delivery; after K clean buckets in a row
 * it resolves, with a delivery of its own. Passes run one at a time.
 */
import { randomUUID } from 'node:crypto';
import type { FeatureProfile } from '@edgefleet/drift';
import type { Kysely } from 'kysely';
import { isLeaseLost, type RolloutLease, singleServerLease } from '../rollouts/lease.ts';
import type { Database } from '../store/schema.ts';
import { mergeFeatureMaps, parseReference, parseWindowFeatures, scoreBucket } from './scoring.ts';
import { deliverDue, recordDelivery } from './webhook.ts';

/** The group of every device. */
export const ALL_DEVICES = '*';
/** Groups scored per bucket at most: the tags with the most devices. */
const MAX_GROUPS = 64;
/** Windows committed up to this long after they were received are still picked up. */
const RECEIVE_SLACK_MS = 5000;

/** The lease whose holder runs the drift pass among replicas. */
export const DRIFT_LEASE = 'drift';

export interface DriftEvaluatorOptions {
  readonly db: Kysely<Database>;
  readonly bucketMs: number;
  readonly everyMs: number;
  /** K: consecutive drifted buckets that open an alert (and clean ones that resolve it). */
  readonly alertWindows: number;
  readonly webhook?: { readonly url: string; readonly secret: string } | undefined;
  /** Windows and scores older than this are deleted, once an hour (0: kept forever). */
  readonly retentionDays?: number;
  readonly log: { info: (details: object, message: string) => void; warn: (details: object, message: string) => void };
  /** The server's clock: the same one ingest stamps `received_at` with. */
  readonly now?: () => number;
  /**
   * With several replicas, only the holder of the `drift` lease runs the scheduled passes and
   * opens or resolves alerts (rollouts/lease.ts); one server alone holds it.
   */
  readonly lease?: RolloutLease;
}

export interface DriftPass {
  readonly buckets: number;
  readonly opened: number;
  readonly resolved: number;
  readonly delivered: number;
  /** Telemetry windows and drift scores deleted for age in this pass. */
  readonly pruned: number;
}

/** What a pass scored for one version: its groups' new scores are stored, alerts updated. */
export interface DriftScored {
  readonly model: string;
  readonly version: string;
  readonly groups: readonly string[];
  readonly buckets: number;
}

export interface DriftEvaluator {
  /** One pass now (after any pass in progress), when this server holds the drift lease; nothing otherwise. */
  evaluate(): Promise<DriftPass>;
  /** Calls `listener` after each version's new scores are stored (server-sent events); returns the unsubscribe. */
  onScored(listener: (scored: DriftScored) => void): () => void;
  start(): void;
  close(): Promise<void>;
}

export function createDriftEvaluator(options: DriftEvaluatorOptions): DriftEvaluator {
  const { db, bucketMs, alertWindows: k, log } = options;
  const lease = options.lease ?? singleServerLease;
  // The server's clock, as ingest stamps `received_at` with it.
  const now = options.now ?? Date.now;
  /** Received-at watermark of the last pass; undefined until the first pass reads it from the store. */
  let watermark: string | undefined;
  let running: Promise<DriftPass> = Promise.resolve({ buckets: 0, opened: 0, resolved: 0, delivered: 0, pruned: 0 });
  let prunedAt = Number.NEGATIVE_INFINITY;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const references = new Map<string, { createdAt: string; features: Map<string, FeatureProfile> }>();
  const listeners = new Set<(scored: DriftScored) => void>();

  async function reference(model: string, version: string): Promise<Map<string, FeatureProfile> | undefined> {
    const row = await db
      .selectFrom('reference_profiles')
      .select(['features', 'created_at'])
      .where('model', '=', model)
      .where('version', '=', version)
      .executeTakeFirst();
    if (!row) return undefined;
    const key = `${model}@${version}`;
    const cached = references.get(key);
    if (cached?.createdAt === row.created_at) return cached.features;
    const features = parseReference(row.features);
    references.set(key, { createdAt: row.created_at, features });
    return features;
  }

  async function scoreBucketGroups(model: string, version: string, bucket: number, base: Map<string, FeatureProfile>): Promise<string[]> {
    const rows = await db
      .selectFrom('telemetry_windows')
      .innerJoin('devices', 'devices.id', 'telemetry_windows.device_id')
      .select(['telemetry_windows.body', 'telemetry_windows.device_id', 'telemetry_windows.runs', 'devices.tags'])
      .where('telemetry_windows.model', '=', model)
      .where('telemetry_windows.version', '=', version)
      .where('telemetry_windows.window_start', '>=', new Date(bucket).toISOString())
      .where('telemetry_windows.window_start', '<', new Date(bucket + bucketMs).toISOString())
      .execute();
    if (rows.length === 0) return [];
    const groups = new Map<string, typeof rows>([[ALL_DEVICES, rows]]);
    for (const row of rows) {
      for (const tag of JSON.parse(row.tags) as string[]) {
        const members = groups.get(tag);
        if (members) members.push(row);
        else groups.set(tag, [row]);
      }
    }
    const parsed = new Map(rows.map((row) => [row, parseWindowFeatures(row.body)]));
    const chosen = [...groups]
      .sort((a, b) => (a[0] === ALL_DEVICES ? -1 : b[0] === ALL_DEVICES ? 1 : b[1].length - a[1].length || a[0].localeCompare(b[0])))
      .slice(0, MAX_GROUPS + 1);
    const evaluatedAt = new Date(now()).toISOString();
    const values = chosen.map(([group, members]) => {
      const scored = scoreBucket(base, mergeFeatureMaps(members.map((m) => parsed.get(m) as Map<string, FeatureProfile>)));
      return {
        model,
        version,
        group_tag: group,
        bucket_start: new Date(bucket).toISOString(),
        bucket_end: new Date(bucket + bucketMs).toISOString(),
        devices: new Set(members.map((m) => m.device_id)).size,
        windows: members.length,
        runs: members.reduce((sum, m) => sum + m.runs, 0),
        compared: scored.compared,
        score: scored.score,
        drifted: scored.drifted.length > 0 ? 1 : 0,
        drifted_features: JSON.stringify(scored.drifted),
        results: JSON.stringify(scored.results),
        evaluated_at: evaluatedAt,
      };
    });
    await db
      .insertInto('drift_scores')
      .values(values)
      .onConflict((c) =>
        c.columns(['model', 'version', 'group_tag', 'bucket_start']).doUpdateSet((eb) => ({
          devices: eb.ref('excluded.devices'),
          windows: eb.ref('excluded.windows'),
          runs: eb.ref('excluded.runs'),
          compared: eb.ref('excluded.compared'),
          score: eb.ref('excluded.score'),
          drifted: eb.ref('excluded.drifted'),
          drifted_features: eb.ref('excluded.drifted_features'),
          results: eb.ref('excluded.results'),
          evaluated_at: eb.ref('excluded.evaluated_at'),
        })),
      )
      .execute();
    return chosen.map(([group]) => group);
  }

  /** Opens or resolves the alert of one (version, group) from its last K buckets. */
  async function updateAlert(model: string, version: string, group: string): Promise<'opened' | 'resolved' | undefined> {
    const recent = await db
      .selectFrom('drift_scores')
      .select(['bucket_start', 'bucket_end', 'score', 'drifted', 'drifted_features', 'devices', 'runs'])
      .where('model', '=', model)
      .where('version', '=', version)
      .where('group_tag', '=', group)
      .orderBy('bucket_start', 'desc')
      .limit(k)
      .execute();
    if (recent.length < k) return undefined;
    const allDrifted = recent.every((r) => r.drifted === 1);
    const allClean = recent.every((r) => r.drifted === 0);
    if (!allDrifted && !allClean) return undefined;
    return db.transaction().execute(async (trx) => {
      // An alert (and its webhook) is opened or resolved once, by the replica that holds the pass.
      await lease.check(trx, DRIFT_LEASE);
      const open = await trx
        .selectFrom('drift_alerts')
        .selectAll()
        .where('model', '=', model)
        .where('version', '=', version)
        .where('group_tag', '=', group)
        .where('state', '=', 'firing')
        .executeTakeFirst();
      const at = now();
      const buckets = [...recent].reverse().map((r) => ({
        start: r.bucket_start,
        end: r.bucket_end,
        score: r.score,
        devices: r.devices,
        runs: r.runs,
        driftedFeatures: JSON.parse(r.drifted_features) as string[],
      }));
      if (allDrifted && !open) {
        const id = randomUUID();
        const features = [...new Set(buckets.flatMap((b) => b.driftedFeatures))].sort();
        const score = Math.max(...buckets.map((b) => b.score));
        const alert = {
          id,
          model,
          version,
          group_tag: group,
          state: 'firing' as const,
          opened_at: new Date(at).toISOString(),
          resolved_at: null,
          first_bucket: buckets[0]?.start ?? '',
          last_bucket: buckets.at(-1)?.start ?? '',
          score,
          features: JSON.stringify(features),
        };
        await trx.insertInto('drift_alerts').values(alert).execute();
        await recordDelivery(trx, {
          alertId: id,
          event: 'drift.firing',
          now: at,
          payload: {
            alert: { id, model, version, group, state: 'firing', openedAt: alert.opened_at, score, features, windows: k, buckets },
          },
        });
        log.warn({ alert: id, model, version, group, features }, 'drift alert firing');
        return 'opened';
      }
      if (allClean && open) {
        const resolvedAt = new Date(at).toISOString();
        await trx.updateTable('drift_alerts').set({ state: 'resolved', resolved_at: resolvedAt }).where('id', '=', open.id).execute();
        await recordDelivery(trx, {
          alertId: open.id,
          event: 'drift.resolved',
          now: at,
          payload: {
            alert: { id: open.id, model, version, group, state: 'resolved', openedAt: open.opened_at, resolvedAt, windows: k, buckets },
          },
        });
        log.info({ alert: open.id, model, version, group }, 'drift alert resolved');
        return 'resolved';
      }
      return undefined;
    });
  }

  async function pass(): Promise<DriftPass> {
    if (!(await lease.holds(DRIFT_LEASE))) {
      // Another replica scores; when this one takes over, it starts from what is stored.
      watermark = undefined;
      return { buckets: 0, opened: 0, resolved: 0, delivered: 0, pruned: 0 };
    }
    const started = new Date(now()).toISOString();
    if (watermark === undefined) {
      const last = await db
        .selectFrom('drift_scores')
        .select((eb) => eb.fn.max('evaluated_at').as('at'))
        .executeTakeFirst();
      watermark = (last?.at as string | null | undefined) ?? '';
    }
    const since = watermark === '' ? '' : new Date(Date.parse(watermark) - RECEIVE_SLACK_MS).toISOString();
    const touched = await db
      .selectFrom('telemetry_windows')
      .select(['model', 'version', 'window_start'])
      .distinct()
      .where('received_at', '>', since)
      .execute();
    const work = new Map<string, { model: string; version: string; buckets: Set<number> }>();
    for (const row of touched) {
      const key = `${row.model}@${row.version}`;
      const entry = work.get(key) ?? { model: row.model, version: row.version, buckets: new Set<number>() };
      entry.buckets.add(Math.floor(Date.parse(row.window_start) / bucketMs) * bucketMs);
      work.set(key, entry);
    }
    let buckets = 0;
    let opened = 0;
    let resolved = 0;
    for (const { model, version, buckets: due } of work.values()) {
      const base = await reference(model, version);
      if (!base) continue;
      const groups = new Set<string>();
      for (const bucket of [...due].sort((a, b) => a - b)) {
        for (const group of await scoreBucketGroups(model, version, bucket, base)) groups.add(group);
        buckets++;
      }
      for (const group of groups) {
        const change = await updateAlert(model, version, group);
        if (change === 'opened') opened++;
        if (change === 'resolved') resolved++;
      }
      if (groups.size > 0) {
        const scored = { model, version, groups: [...groups], buckets: due.size };
        for (const listener of listeners) {
          try {
            listener(scored);
          } catch (error) {
            log.warn({ err: error }, 'a drift listener failed');
          }
        }
      }
    }
    watermark = started;
    const delivered = await deliverDue(db, options.webhook, now, log);
    return { buckets, opened, resolved, delivered, pruned: await prune() };
  }

  /** Deletes what is older than the retention, at most once an hour. */
  async function prune(): Promise<number> {
    const days = options.retentionDays ?? 0;
    if (days <= 0 || now() - prunedAt < 3600_000) return 0;
    prunedAt = now();
    const before = new Date(now() - days * 24 * 3600_000).toISOString();
    const windows = await db.deleteFrom('telemetry_windows').where('window_end', '<', before).executeTakeFirst();
    const scores = await db.deleteFrom('drift_scores').where('bucket_end', '<', before).executeTakeFirst();
    // Device histories age out with the telemetry they explain.
    const events = await db.deleteFrom('device_events').where('received_at', '<', before).executeTakeFirst();
    const pruned = Number(windows.numDeletedRows) + Number(scores.numDeletedRows) + Number(events.numDeletedRows);
    if (pruned > 0)
      log.info(
        { before, windows: Number(windows.numDeletedRows), scores: Number(scores.numDeletedRows), events: Number(events.numDeletedRows) },
        'telemetry pruned',
      );
    return pruned;
  }

  function evaluate(): Promise<DriftPass> {
    running = running.catch(() => undefined).then(pass);
    return running;
  }

  function schedule(): void {
    if (closed) return;
    timer = setTimeout(() => {
      evaluate()
        .catch((error: unknown) => {
          if (isLeaseLost(error)) watermark = undefined;
          else log.warn({ err: error }, 'drift evaluation failed');
        })
        .finally(schedule);
    }, options.everyMs);
    timer.unref?.();
  }

  return {
    evaluate,
    onScored(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    start: schedule,
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await running.catch(() => undefined);
    },
  };
}
