import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canTransition, decideStage, isFinal, median, type RolloutState, type StageFacts, type StageGates, TRANSITIONS } from './decide.ts';

const STATES = Object.keys(TRANSITIONS) as RolloutState[];

const gatesArbitrary: fc.Arbitrary<StageGates> = fc.record({
  maxFailureRate: fc.double({ min: 0, max: 1, noNaN: true }),
  minDevicesReporting: fc.nat(20),
  maxLatencyRatio: fc.option(fc.double({ min: 0.5, max: 10, noNaN: true }), { nil: undefined }),
  maxDriftScore: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
  maxOutputShift: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
  soakMs: fc.nat(10_000),
  onGateFailure: fc.constantFrom('pause' as const, 'rollback' as const),
});

const factsArbitrary: fc.Arbitrary<StageFacts> = fc
  .record({
    lastStage: fc.nat(4),
    active: fc.nat(30),
    failed: fc.nat(5),
    waiting: fc.nat(5),
    ratios: fc.array(fc.double({ min: 0.1, max: 20, noNaN: true }), { maxLength: 30 }),
    openForMs: fc.nat(20_000),
    telemetry: fc.option(
      fc.oneof(
        fc.constant({ verdict: 'pass' as const, readings: {} }),
        fc.constant({ verdict: 'wait' as const, devicesReporting: 0, needed: 1 }),
        fc.constant({ verdict: 'trip' as const, reason: { gate: 'maxDriftScore' }, readings: { driftScore: 0.5 } }),
      ),
      { nil: undefined },
    ),
  })
  .chain((f) =>
    fc.nat(f.lastStage).map((stage) => ({
      stage,
      lastStage: f.lastStage,
      active: f.active,
      failed: f.failed,
      waiting: f.waiting,
      errors: f.failed > 0 ? ['EF_ACCEPTANCE_FAILED'] : [],
      latencyRatios: f.ratios.slice(0, f.active),
      openForMs: f.openForMs,
      telemetry: f.telemetry,
    })),
  );

const quiet: StageGates = { maxFailureRate: 0, minDevicesReporting: 1, soakMs: 0, onGateFailure: 'rollback' };
const facts = (over: Partial<StageFacts> = {}): StageFacts => ({
  stage: 0,
  lastStage: 2,
  active: 0,
  failed: 0,
  waiting: 0,
  errors: [],
  latencyRatios: [],
  openForMs: 0,
  ...over,
});

describe('rollout state machine', () => {
  it('makes every state reachable from running, every final state final, and lets every other state end', () => {
    const reachable = new Set<RolloutState>(['running']);
    for (let grew = true; grew; ) {
      grew = false;
      for (const from of [...reachable]) {
        for (const to of TRANSITIONS[from]) {
          if (!reachable.has(to)) {
            reachable.add(to);
            grew = true;
          }
        }
      }
    }
    expect([...reachable].sort()).toEqual([...STATES].sort());
    for (const state of ['completed', 'rolled_back', 'aborted'] as const) {
      expect(isFinal(state)).toBe(true);
      for (const to of STATES) expect(canTransition(state, to)).toBe(false);
    }
    const canEnd = (state: RolloutState, seen = new Set<RolloutState>()): boolean =>
      isFinal(state) || TRANSITIONS[state].some((to) => !seen.has(to) && canEnd(to, new Set([...seen, state])));
    for (const state of STATES) expect(canEnd(state), state).toBe(true);
  });

  it('never passes a stage below its thresholds, whatever the facts', () => {
    fc.assert(
      fc.property(gatesArbitrary, factsArbitrary, (gates, f) => {
        const decision = decideStage(gates, f);
        if (decision.action !== 'open-next-stage' && decision.action !== 'complete') return;
        const reporting = f.active + f.failed;
        expect(f.waiting).toBe(0);
        expect(reporting).toBeGreaterThanOrEqual(Math.max(1, Math.min(gates.minDevicesReporting, reporting)));
        expect(f.openForMs).toBeGreaterThanOrEqual(gates.soakMs);
        if (f.failed > 0) expect(f.failed / reporting).toBeLessThanOrEqual(gates.maxFailureRate);
        if (gates.maxLatencyRatio !== undefined && f.latencyRatios.length >= Math.max(1, Math.min(gates.minDevicesReporting, reporting))) {
          expect(median(f.latencyRatios)).toBeLessThanOrEqual(gates.maxLatencyRatio);
        }
        if (gates.maxDriftScore !== undefined || gates.maxOutputShift !== undefined) expect(f.telemetry?.verdict).toBe('pass');
        expect(decision.action === 'complete').toBe(f.stage >= f.lastStage);
      }),
      { numRuns: 2000 },
    );
  });

  it('stops with the policy and the numbers when a gate trips, and only then', () => {
    fc.assert(
      fc.property(gatesArbitrary, factsArbitrary, (gates, f) => {
        const decision = decideStage(gates, f);
        if (decision.action !== 'stop') return;
        expect(decision.policy).toBe(gates.onGateFailure);
        expect(['maxFailureRate', 'maxLatencyRatio', 'maxDriftScore']).toContain(decision.reason.gate);
      }),
      { numRuns: 2000 },
    );
  });

  it('holds a stage nobody has reported on, even when every member is offline (no one waiting)', () => {
    expect(decideStage(quiet, facts())).toEqual({ action: 'wait', until: 'enough-reports' });
    expect(decideStage({ ...quiet, minDevicesReporting: 0 }, facts())).toEqual({ action: 'wait', until: 'enough-reports' });
    expect(decideStage(quiet, facts({ active: 1 }))).toEqual({ action: 'open-next-stage' });
    expect(decideStage(quiet, facts({ active: 1, stage: 2 }))).toEqual({ action: 'complete' });
  });

  it('waits for online members, enough reports and the soak, in that order', () => {
    expect(decideStage(quiet, facts({ active: 3, waiting: 1 }))).toMatchObject({ until: 'members-answer' });
    expect(decideStage({ ...quiet, minDevicesReporting: 5 }, facts({ active: 3, waiting: 2 }))).toMatchObject({ until: 'members-answer' });
    expect(decideStage({ ...quiet, minDevicesReporting: 5 }, facts({ active: 3 }))).toEqual({ action: 'open-next-stage' }); // 3 of 3 counted
    expect(decideStage({ ...quiet, soakMs: 1000 }, facts({ active: 3, openForMs: 999 }))).toMatchObject({ until: 'soaked' });
    expect(decideStage({ ...quiet, soakMs: 1000 }, facts({ active: 3, openForMs: 1000 }))).toEqual({ action: 'open-next-stage' });
  });

  it('trips the failure gate above its rate with the error codes, and the latency gate on the median', () => {
    expect(decideStage({ ...quiet, maxFailureRate: 0.5 }, facts({ active: 1, failed: 1, errors: ['EF_X'] }))).toEqual({
      action: 'open-next-stage',
    });
    expect(decideStage({ ...quiet, maxFailureRate: 0.4 }, facts({ active: 1, failed: 1, errors: ['EF_X'] }))).toEqual({
      action: 'stop',
      policy: 'rollback',
      reason: { gate: 'maxFailureRate', stage: 0, failed: 1, reporting: 2, failureRate: 0.5, limit: 0.4, errors: ['EF_X'] },
    });
    // One device far slower, the others at par: the median does not trip.
    const latency = { ...quiet, maxLatencyRatio: 3, minDevicesReporting: 3, onGateFailure: 'pause' as const };
    expect(decideStage(latency, facts({ active: 3, latencyRatios: [1, 1.1, 40] }))).toEqual({ action: 'open-next-stage' });
    expect(decideStage(latency, facts({ active: 3, latencyRatios: [4, 5, 1] }))).toMatchObject({
      action: 'stop',
      policy: 'pause',
      reason: { gate: 'maxLatencyRatio', medianRatio: 4, worstRatio: 5, devicesMeasured: 3, limit: 3 },
    });
    // Not enough measurements yet: no verdict from the latency gate.
    expect(decideStage(latency, facts({ active: 3, waiting: 1, latencyRatios: [9, 9] }))).toMatchObject({ until: 'members-answer' });
  });

  it('asks for the telemetry gates once the stage is otherwise ready, and follows their verdict', () => {
    const drift = { ...quiet, maxDriftScore: 0.1, minDevicesReporting: 2 };
    expect(decideStage(drift, facts({ active: 3, waiting: 1 }))).toMatchObject({ until: 'members-answer' });
    expect(decideStage(drift, facts({ active: 3 }))).toEqual({ action: 'check-telemetry', needed: 2 });
    expect(decideStage(drift, facts({ failed: 0, active: 0 }))).toMatchObject({ action: 'wait' });
    expect(decideStage(drift, facts({ active: 3, telemetry: { verdict: 'wait', devicesReporting: 1, needed: 2 } }))).toMatchObject({
      until: 'telemetry',
    });
    expect(decideStage(drift, facts({ active: 3, telemetry: { verdict: 'pass', readings: {} } }))).toEqual({ action: 'open-next-stage' });
    expect(
      decideStage(
        drift,
        facts({ active: 3, telemetry: { verdict: 'trip', reason: { gate: 'maxDriftScore', score: 0.5 }, readings: { driftScore: 0.5 } } }),
      ),
    ).toEqual({
      action: 'stop',
      policy: 'rollback',
      reason: { gate: 'maxDriftScore', score: 0.5 },
    });
  });

  it('judges a shadow stage by its shadow gates, not the live telemetry gates, once it is otherwise ready', () => {
    const shadow = { ...quiet, maxDriftScore: 0.1, minDevicesReporting: 3, shadow: { minAgreement: 0.9, minRuns: 100, maxErrorRate: 0 } };
    const readings = {
      devices: 2,
      runs: 10,
      skipped: 0,
      errors: 0,
      errorRate: 0,
      rows: 10,
      agreement: 1,
      pooledAgreement: 1,
      medianDeviceAgreement: 1,
      topKOverlap: 1,
      maxAbsDiff: 0,
      meanAbsDiff: 0,
      latencyRatio: null,
      worstDevice: null,
    };
    expect(decideStage(shadow, facts({ active: 2, waiting: 1 }))).toMatchObject({ until: 'members-answer' });
    expect(decideStage(shadow, facts({ active: 0, failed: 0 }))).toMatchObject({ until: 'enough-reports' });
    // Two members run the candidate in shadow: their comparisons are read (needed: at most the members).
    expect(decideStage(shadow, facts({ active: 2 }))).toEqual({ action: 'check-shadow', needed: 2 });
    expect(decideStage(shadow, facts({ active: 2, shadow: { verdict: 'wait', readings, needed: { devices: 2, runs: 100 } } }))).toEqual({
      action: 'wait',
      until: 'shadow-runs',
    });
    expect(decideStage(shadow, facts({ active: 2, shadow: { verdict: 'pass', readings } }))).toEqual({ action: 'open-next-stage' });
    expect(
      decideStage(
        shadow,
        facts({ active: 2, shadow: { verdict: 'trip', readings, reason: { gate: 'minShadowAgreement', agreement: 0.5 } } }),
      ),
    ).toEqual({ action: 'stop', policy: 'rollback', reason: { gate: 'minShadowAgreement', agreement: 0.5 } });
    // A failed shadow install is a failure like any other.
    expect(decideStage(shadow, facts({ active: 2, failed: 1, errors: ['EF_ACCEPTANCE_FAILED'] }))).toMatchObject({
      action: 'stop',
      reason: { gate: 'maxFailureRate' },
    });
  });
});
