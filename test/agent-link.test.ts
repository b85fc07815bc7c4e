/**
 * A device whose fleet server goes away for a while: the agent says so once, retries with a
 * growing delay (each failed attempt only at debug), and says once when it is back, with how long
 * it was offline. An hour offline is two lines in the device's log, not one every two seconds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, startFleet, until } from './helpers/fleet.ts';

let fleet: Fleet;

beforeAll(async () => {
  fleet = await startFleet();
}, 60_000);

afterAll(async () => {
  await fleet?.close();
});

describe('the agent offline', () => {
  it('logs losing the broker once, retries with capped exponential backoff, and logs the reconnection once', async () => {
    const lines: { level: string; message: string; fields: Record<string, unknown>; at: number }[] = [];
    const device = await fleet.startDevice('link-1', {
      reconnectPeriodMs: 50,
      log: (level, message, fields = {}) => lines.push({ level, message, fields, at: Date.now() }),
    });
    await fleet.stopServer();
    const attempts = () => lines.filter((line) => line.message === 'mqtt connection attempt failed');
    // Witness: the agent had six tries while the server was away.
    await until(() => attempts().length >= 6, 'six failed reconnection attempts', 60_000);
    await fleet.startServer();
    await until(() => lines.some((line) => line.message === 'reconnected to the fleet broker'), 'the agent to reconnect', 60_000);
    await until(() => device.agent.connected, 'the agent connected');

    const aboveDebug = lines.filter((line) => line.level !== 'debug' && line.message !== 'desired state applied');
    expect(aboveDebug.map((line) => [line.level, line.message])).toEqual([
      ['warn', 'lost the connection to the fleet broker; reconnecting with backoff'],
      ['info', 'reconnected to the fleet broker'],
    ]);
    const back = aboveDebug[1]?.fields ?? {};
    expect(back.attempts).toBeGreaterThanOrEqual(7);
    expect(back.offlineSeconds).toBeGreaterThan(0);
    // The delays grow: doubling with equal jitter (x0.5 to x1) never shrinks, so the sixth gap is
    // at least four times the first (50 ms start here; 60 s cap).
    const times = attempts().map((line) => line.at);
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? t));
    expect(gaps.length).toBeGreaterThanOrEqual(5);
    expect(gaps[4] ?? 0).toBeGreaterThan(4 * (gaps[0] ?? Number.POSITIVE_INFINITY) * 0.9);
    await device.stop();
  }, 120_000);
});
