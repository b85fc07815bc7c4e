/**
 * Webhook deliveries of drift alerts: each one is a row first (recorded, retried after a crash),
 * then POSTed with an HMAC-SHA256 signature over `<timestamp>.<body>`:
 *
 *   X-Edgefleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *   X-Edgefleet-Event: drift.firing | drift.resolved
 *   X-Edgefleet-Delivery: <delivery id>   (the same on every retry: receivers deduplicate by it)
 *
 * A receiver recomputes the HMAC over the raw body and refuses old timestamps (replays);
 * `verifyWebhookSignature` does both. Failed deliveries are retried with exponential backoff
 * (1 s, 2 s, 4 s... at most 10 min apart) up to MAX_ATTEMPTS, each attempt recorded.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';

export const MAX_ATTEMPTS = 12;
const TIMEOUT_MS = 10_000;

export function signWebhook(secret: string, body: string, at: number): string {
  const t = Math.floor(at / 1000);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** True when `header` signs `body` with `secret` and is at most `toleranceSeconds` old. */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined,
  body: string,
  now = Date.now(),
  toleranceSeconds = 300,
): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || !parts.v1 || Math.abs(now / 1000 - t) > toleranceSeconds) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  const given = Buffer.from(parts.v1);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Records a delivery to make (in the caller's transaction, with the alert it announces). */
export async function recordDelivery(
  db: Kysely<Database>,
  delivery: { alertId: string; event: string; payload: Record<string, unknown>; now: number },
): Promise<void> {
  const id = randomUUID();
  const at = new Date(delivery.now).toISOString();
  await db
    .insertInto('webhook_deliveries')
    .values({
      id,
      alert_id: delivery.alertId,
      event: delivery.event,
      body: JSON.stringify({ id, event: delivery.event, createdAt: at, ...delivery.payload }),
      created_at: at,
      attempts: 0,
      next_attempt_at: at,
      delivered_at: null,
      response_status: null,
      last_error: null,
    })
    .execute();
}

/** Sends every delivery that is due; returns how many succeeded. */
export async function deliverDue(
  db: Kysely<Database>,
  webhook: { url: string; secret: string } | undefined,
  now: () => number,
  log: { warn: (details: object, message: string) => void },
): Promise<number> {
  if (!webhook) return 0;
  const due = await db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('delivered_at', 'is', null)
    .where('attempts', '<', MAX_ATTEMPTS)
    .where('next_attempt_at', '<=', new Date(now()).toISOString())
    .orderBy('created_at')
    .limit(100)
    .execute();
  let delivered = 0;
  for (const delivery of due) {
    const at = now();
    let status: number | null = null;
    let error: string | null = null;
    try {
      const response = await fetch(webhook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'edgefleet-webhook/1',
          'x-edgefleet-event': delivery.event,
          'x-edgefleet-delivery': delivery.id,
          'x-edgefleet-signature': signWebhook(webhook.secret, delivery.body, at),
        },
        body: delivery.body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'error',
      });
      status = response.status;
      await response.body?.cancel();
      if (!response.ok) error = `HTTP ${response.status}`;
    } catch (failure) {
      error = (failure as Error).message.slice(0, 500);
    }
    const attempts = delivery.attempts + 1;
    await db
      .updateTable('webhook_deliveries')
      .set(
        error === null
          ? { attempts, delivered_at: new Date(now()).toISOString(), response_status: status, last_error: null }
          : {
              attempts,
              response_status: status,
              last_error: error,
              next_attempt_at: new Date(now() + Math.min(600_000, 1000 * 2 ** (attempts - 1))).toISOString(),
            },
      )
      .where('id', '=', delivery.id)
      .execute();
    if (error === null) delivered++;
    else log.warn({ delivery: delivery.id, event: delivery.event, attempts, error }, 'webhook delivery failed');
  }
  return delivered;
}
