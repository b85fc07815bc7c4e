import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { numericProfile, observe, toWire } from '@edgefleet/drift';
import { splitmix } from '@edgefleet/test-utils';
import { describeClockContract } from '@edgefleet/test-utils/contracts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type OpenedDatabase, openDatabase } from '../store/db.ts';
import { createDriftEvaluator } from './evaluator.ts';

/** A deterministic normal stream (splitmix32 + Box–Muller). */
function normals(seed: number): () => number {
  const uniform = splitmix(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

const MINUTE = 60_000;

describe('drift evaluator', () => {
  let store: OpenedDatabase;
  const logged: string[] = [];
  const log = { info: (_: object, message: string) => logged.push(message), warn: (_: object, message: string) => logged.push(message) };
  const t0 = Math.floor(Date.now() / MINUTE) * MINUTE - 20 * MINUTE;
  let seq = 0;
  const draw = normals(7);

  /** One window of 200 values of feature x, drawn from N(shift, 1), from `device` in the minute `minute`. */
  async function window(device: string, at: number, shift: number, receivedAt = Date.now()): Promise<void> {
    const profile = numericProfile({ k: 100 });
    for (let i = 0; i < 200; i++) observe(profile, draw() + shift);
    await store.db
      .insertInto('telemetry_windows')
      .values({
        device_id: device,
        boot_id: 'b0',
        seq: seq++,
        model: 'm',
        version: '1.0.0',
        window_start: new Date(at).toISOString(),
        window_end: new Date(at + 30_000).toISOString(),
        runs: 200,
        dropped: 0,
        body: JSON.stringify({ features: [{ name: 'x', profile: toWire(profile) }] }),
        received_at: new Date(receivedAt).toISOString(),
      })
      .execute();
  }

  beforeEach(async () => {
    logged.length = 0;
    store = await openDatabase({ dataDir: await mkdtemp(join(tmpdir(), 'edgefleet-evaluator-')) });
    for (const [id, tags] of [
      ['d1', ['zone=a']],
      ['d2', ['zone=b']],
    ] as const) {
      await store.db
        .insertInto('devices')
        .values({
          id,
          secret_hash: 'sha256$00',
          tags: JSON.stringify(tags),
          status: 'active',
          created_at: new Date().toISOString(),
          last_seen_at: null,
          online: 0,
          reported: null,
        })
        .execute();
    }
    const reference = numericProfile();
    for (let i = 0; i < 5000; i++) observe(reference, draw());
    await store.db
      .insertInto('reference_profiles')
      .values({
        model: 'm',
        version: '1.0.0',
        source: 'test',
        windows: 0,
        runs: 5000,
        features: JSON.stringify([{ name: 'x', profile: toWire(reference) }]),
        created_at: new Date().toISOString(),
        created_by: 'test',
      })
      .execute();
  });
  afterEach(() => store.close());

  const scores = (group: string) =>
    store.db
      .selectFrom('drift_scores')
      .select(['bucket_start', 'drifted'])
      .where('group_tag', '=', group)
      .orderBy('bucket_start')
      .execute();
  const alerts = () => store.db.selectFrom('drift_alerts').selectAll().orderBy('opened_at').execute();
  const deliveries = () => store.db.selectFrom('webhook_deliveries').select(['event', 'alert_id', 'body']).orderBy('created_at').execute();

  describeClockContract('the drift evaluator (scores, alerts, webhook deliveries)', async (clock) => {
    const evaluator = createDriftEvaluator({ db: store.db, bucketMs: MINUTE, everyMs: 3_600_000, alertWindows: 1, log, now: clock.now });
    return {
      async act() {
        // A drifted window in a bucket that has closed by the clock's time: scored, alerted, and a delivery queued.
        await window('d2', clock.now() - 2 * MINUTE, 3, clock.now()); // received now, as ingest stamps it
        await evaluator.evaluate();
      },
      async timestamps() {
        const [scored, alerted, queued] = await Promise.all([
          store.db.selectFrom('drift_scores').select('evaluated_at').execute(),
          store.db.selectFrom('drift_alerts').select(['opened_at', 'resolved_at']).execute(),
          store.db.selectFrom('webhook_deliveries').select(['created_at', 'next_attempt_at']).execute(),
        ]);
        return [
          ...scored.map((r) => r.evaluated_at),
          ...alerted.flatMap((r) => [r.opened_at, ...(r.resolved_at ? [r.resolved_at] : [])]),
          ...queued.flatMap((r) => [r.created_at, r.next_attempt_at]),
        ];
      },
      close: () => evaluator.close(),
    };
  });

  it('scores each group per bucket, opens one alert after K drifted buckets, and resolves it after K clean ones', async () => {
    // Six minutes: zone a steady; zone b moves by 1 SD from minute 2.
    for (let minute = 0; minute < 6; minute++) {
      await window('d1', t0 + minute * MINUTE, 0);
      await window('d2', t0 + minute * MINUTE, minute >= 2 ? 1 : 0);
    }
    const evaluator = createDriftEvaluator({ db: store.db, bucketMs: MINUTE, everyMs: 3_600_000, alertWindows: 3, log });
    const first = await evaluator.evaluate();
    expect(first).toMatchObject({ buckets: 6, resolved: 0 });
    expect((await scores('zone=a')).map((s) => s.drifted)).toEqual([0, 0, 0, 0, 0, 0]);
    expect((await scores('zone=b')).map((s) => s.drifted)).toEqual([0, 0, 1, 1, 1, 1]);
    const opened = await alerts();
    expect(opened.map((a) => [a.group_tag, a.state])).toContainEqual(['zone=b', 'firing']);
    expect(opened.some((a) => a.group_tag === 'zone=a')).toBe(false);
    const alert = opened.find((a) => a.group_tag === 'zone=b');
    expect(alert).toMatchObject({
      first_bucket: new Date(t0 + 3 * MINUTE).toISOString(),
      last_bucket: new Date(t0 + 5 * MINUTE).toISOString(),
    });
    // Recorded for the webhook even with none configured (sent when one is).
    expect((await deliveries()).filter((d) => d.alert_id === alert?.id).map((d) => d.event)).toEqual(['drift.firing']);

    // Another pass with nothing new, then more drifted minutes: still one alert (deduplicated).
    await evaluator.evaluate();
    await window('d2', t0 + 6 * MINUTE, 1);
    await evaluator.evaluate();
    expect((await alerts()).filter((a) => a.group_tag === 'zone=b')).toHaveLength(1);

    // Zone b returns to normal for three minutes: the alert resolves, and that is recorded too.
    for (let minute = 7; minute < 10; minute++) await window('d2', t0 + minute * MINUTE, 0);
    const last = await evaluator.evaluate();
    expect(last.resolved).toBeGreaterThanOrEqual(1);
    expect((await alerts()).find((a) => a.id === alert?.id)?.state).toBe('resolved');
    expect((await deliveries()).filter((d) => d.alert_id === alert?.id).map((d) => d.event)).toEqual(['drift.firing', 'drift.resolved']);
    await evaluator.close();
  });

  it('folds a late window into the bucket it belongs to when it arrives', async () => {
    await window('d1', t0, 0);
    const evaluator = createDriftEvaluator({ db: store.db, bucketMs: MINUTE, everyMs: 3_600_000, alertWindows: 3, log });
    await evaluator.evaluate();
    const runs = async () =>
      (
        await store.db
          .selectFrom('drift_scores')
          .select('runs')
          .where('group_tag', '=', '*')
          .where('bucket_start', '=', new Date(t0).toISOString())
          .executeTakeFirstOrThrow()
      ).runs;
    expect(await runs()).toBe(200);
    await window('d2', t0 + 10_000, 0); // a device back from offline sends a window of that minute
    await evaluator.evaluate();
    expect(await runs()).toBe(400);
    await evaluator.close();
  });

  it('deletes windows and scores older than the retention, once an hour', async () => {
    const old = Date.now() - 40 * 24 * 3600_000;
    await window('d1', old, 0);
    await window('d1', t0, 0);
    const evaluator = createDriftEvaluator({ db: store.db, bucketMs: MINUTE, everyMs: 3_600_000, alertWindows: 3, retentionDays: 30, log });
    const pass = await evaluator.evaluate();
    expect(pass.pruned).toBe(3); // the old window, and the scores its bucket got in the same pass (groups * and zone=a)
    const left = await store.db.selectFrom('telemetry_windows').select('window_start').execute();
    expect(left.map((w) => w.window_start)).toEqual([new Date(t0).toISOString()]);
    expect((await scores('*')).map((s) => s.bucket_start)).toEqual([new Date(t0).toISOString()]);
    await window('d1', old + MINUTE, 0);
    expect((await evaluator.evaluate()).pruned).toBe(0); // the next pruning is an hour away
    await evaluator.close();
  });
});
