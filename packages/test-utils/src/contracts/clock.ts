/**
 * The clock contract: a component that takes an injected clock (the rollout engine, the drift
 * evaluator) reads time from it alone. Its subject runs with a clock set years away from the wall
 * clock; every timestamp it writes must come from that clock, and follow it when it moves, so a
 * test can soak a stage or age a bucket by moving the clock instead of sleeping.
 */
import { describe, expect, it } from 'vitest';

export interface ManualClock {
  now(): number;
  advance(ms: number): void;
}

/** A clock that moves only when told; by default it starts on 2031-03-01, far from any wall clock a test runs under. */
export function createManualClock(start = Date.parse('2031-03-01T00:00:00.000Z')): ManualClock {
  let at = start;
  return {
    now: () => at,
    advance(ms) {
      at += ms;
    },
  };
}

export interface ClockSubject {
  /** Does the component's work once (a tick, an evaluation pass), as of the clock's time. */
  act(): Promise<void>;
  /** Every timestamp the component has written so far (ISO 8601). */
  timestamps(): Promise<readonly string[]>;
  close(): Promise<void>;
}

export function describeClockContract(name: string, makeSubject: (clock: ManualClock) => Promise<ClockSubject>): void {
  describe(`clock contract: ${name}`, () => {
    it('writes only the injected clock’s time, and follows it when it moves', async () => {
      const clock = createManualClock();
      const start = clock.now();
      const subject = await makeSubject(clock);
      try {
        await subject.act();
        const first = await subject.timestamps();
        expect(first.length, 'the subject wrote no timestamp: nothing was checked').toBeGreaterThan(0);
        for (const at of first) expect(Date.parse(at), at).toBe(start);
        clock.advance(3_600_000);
        await subject.act();
        const later = (await subject.timestamps()).filter((at) => !first.includes(at));
        expect(later.length, 'the subject wrote nothing after the clock moved').toBeGreaterThan(0);
        for (const at of later) expect(Date.parse(at), at).toBe(start + 3_600_000);
      } finally {
        await subject.close();
      }
    });
  });
}
