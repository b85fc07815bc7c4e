import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TelemetryWindow } from '@edgefleet/protocol';
import { describe, expect, it } from 'vitest';
import { createFileTelemetryQueue } from './node.ts';

const window = (seq: number): TelemetryWindow =>
  ({
    type: 'edgefleet.telemetry/v1',
    deviceId: 'dev-1',
    bootId: 'b0f0c0de-0000-4000-8000-000000000000',
    seq,
  }) as unknown as TelemetryWindow;

describe('the telemetry outbox on disk', () => {
  it('keeps windows in order across a restart, drops the oldest past its limit and counts them once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-outbox-'));
    const queue = createFileTelemetryQueue(dir, { limit: 3 });
    for (let seq = 0; seq < 5; seq++) await queue.append(window(seq));
    const reopened = createFileTelemetryQueue(dir, { limit: 3 });
    expect((await reopened.list()).map((q) => q.window.seq)).toEqual([2, 3, 4]);
    expect(await reopened.takeDropped()).toBe(2);
    expect(await reopened.takeDropped()).toBe(0);
    const [first] = await reopened.list();
    await reopened.remove([first?.key as string]);
    expect((await reopened.list()).map((q) => q.window.seq)).toEqual([3, 4]);
  });

  it('removes an unreadable entry instead of blocking the queue, and counts it as dropped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-outbox-'));
    const queue = createFileTelemetryQueue(dir);
    await queue.append(window(0));
    await writeFile(join(dir, 'telemetry', '000000000000001-torn-000000000001.json'), '{"type":');
    expect((await queue.list()).map((q) => q.window.seq)).toEqual([0]);
    expect(await queue.takeDropped()).toBe(1);
    expect((await readdir(join(dir, 'telemetry'))).filter((f) => f.includes('torn'))).toEqual([]);
  });
});
