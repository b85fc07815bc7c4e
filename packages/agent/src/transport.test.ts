import { describe, expect, it } from 'vitest';
import { reconnectDelay } from './transport.ts';

describe('reconnectDelay', () => {
  it('doubles per attempt with equal jitter, never shrinks, and stops at the cap', () => {
    const low = () => 0;
    const high = () => 0.999_999;
    expect(reconnectDelay(0, 2000, 60_000, low)).toBe(1000);
    expect(reconnectDelay(0, 2000, 60_000, high)).toBe(2000);
    for (let attempt = 0; attempt < 12; attempt++) {
      // The shortest next delay is the longest this one could be: a fleet's retries spread out but never speed up.
      expect(reconnectDelay(attempt + 1, 2000, 60_000, low)).toBeGreaterThanOrEqual(
        Math.min(reconnectDelay(attempt, 2000, 60_000, high), 30_000),
      );
      expect(reconnectDelay(attempt, 2000, 60_000, high)).toBeLessThanOrEqual(60_000);
    }
    expect(reconnectDelay(50, 2000, 60_000, low)).toBe(30_000);
    expect(reconnectDelay(1e9, 2000, 60_000, high)).toBe(60_000);
  });
});
