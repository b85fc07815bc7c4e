import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhookSignature } from './webhook.ts';

describe('webhook signatures', () => {
  const body = JSON.stringify({ event: 'drift.firing', alert: { group: 'zone=east' } });
  const now = Date.parse('2026-11-26T02:00:00Z');

  it('is HMAC-SHA256 over "<t>.<body>", as a receiver in any language recomputes it', () => {
    const header = signWebhook('s3cret', body, now);
    const t = Math.floor(now / 1000);
    expect(header).toBe(`t=${t},v1=${createHmac('sha256', 's3cret').update(`${t}.${body}`).digest('hex')}`);
    expect(verifyWebhookSignature('s3cret', header, body, now)).toBe(true);
  });

  it('refuses another secret, a changed body, a replay older than five minutes, and malformed headers', () => {
    const header = signWebhook('s3cret', body, now);
    expect(verifyWebhookSignature('other', header, body, now)).toBe(false);
    expect(verifyWebhookSignature('s3cret', header, body.replace('east', 'west'), now)).toBe(false);
    expect(verifyWebhookSignature('s3cret', header, body, now + 301_000)).toBe(false);
    expect(verifyWebhookSignature('s3cret', header, body, now + 299_000)).toBe(true);
    for (const bad of [undefined, '', 'v1=abc', `t=${now / 1000}`, 't=abc,v1=00', `t=${Math.floor(now / 1000)},v1=${'0'.repeat(64)}`]) {
      expect(verifyWebhookSignature('s3cret', bad, body, now)).toBe(false);
    }
  });
});
