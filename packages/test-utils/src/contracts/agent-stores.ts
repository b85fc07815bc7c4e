/**
 * The contracts of the agent's two stores (@edgefleet/agent): its state (the last desired sequence
 * applied) and its telemetry outbox, passed by the files (Node), IndexedDB (fake-indexeddb in
 * Node and real in Chromium) and memory implementations. Persistence across a reopen is part of
 * the contract where the implementation is durable; so is what a store does with an entry it
 * cannot read (a disk fault, a torn write, a hand edit): it never blocks the agent.
 */
import { describe, expect, it } from 'vitest';

/** The agent's state store. */
export interface AgentStateUnderTest {
  read(): Promise<{ lastSequence: number }>;
  write(state: { lastSequence: number }): Promise<void>;
}

export interface AgentStateStorage {
  /** Opens the store; called again to reopen the same storage. */
  open(): Promise<AgentStateUnderTest>;
  /** Replaces what is stored with bytes or values the store cannot read. */
  corrupt?(): Promise<void>;
}

export interface AgentStateHarness {
  /** Durable implementations keep what was written across a reopen. */
  readonly durable: boolean;
  /** Whether `corrupt` exists (in-memory stores have nothing to corrupt). */
  readonly corruptible: boolean;
  /** Fresh, empty storage for one test. */
  storage(): Promise<AgentStateStorage>;
}

export function describeAgentStateContract(name: string, harness: AgentStateHarness): void {
  describe(`AgentStateStore contract: ${name}`, () => {
    it('starts at sequence 0, keeps the last sequence written, and across a reopen when durable', async () => {
      const storage = await harness.storage();
      const state = await storage.open();
      expect(await state.read()).toEqual({ lastSequence: 0 });
      await state.write({ lastSequence: 3 });
      await state.write({ lastSequence: 7 });
      expect(await state.read()).toEqual({ lastSequence: 7 });
      const reopened = await storage.open();
      expect(await reopened.read()).toEqual({ lastSequence: harness.durable ? 7 : 0 });
    });

    it.skipIf(!harness.corruptible)(
      'reads an unreadable state as sequence 0 (the retained desired state is applied again, a no-op for what runs)',
      async () => {
        const storage = await harness.storage();
        const state = await storage.open();
        await state.write({ lastSequence: 5 });
        await storage.corrupt?.();
        const reopened = await storage.open();
        expect(await reopened.read()).toEqual({ lastSequence: 0 });
        await reopened.write({ lastSequence: 6 });
        expect(await reopened.read()).toEqual({ lastSequence: 6 });
      },
    );
  });
}

/** A window as the outbox holds it: the contract only reads what orders and identifies it. */
export interface QueuedWindowLike {
  readonly key: string;
  readonly window: { readonly bootId: string; readonly seq: number };
}

/** The agent's telemetry outbox. */
export interface TelemetryQueueUnderTest<W> {
  append(window: W): Promise<void>;
  list(): Promise<(QueuedWindowLike & { readonly window: W })[]>;
  remove(keys: readonly string[]): Promise<void>;
  takeDropped(): Promise<number>;
}

export interface TelemetryQueueStorage<W> {
  /** Opens the outbox with this bound; called again to reopen the same storage. */
  open(options: { limit: number }): Promise<TelemetryQueueUnderTest<W>>;
  /** Makes the queued entry under `key` unreadable. */
  corrupt?(key: string): Promise<void>;
}

export interface TelemetryQueueHarness<W> {
  readonly durable: boolean;
  readonly corruptible: boolean;
  /** Fresh, empty storage for one test. */
  storage(): Promise<TelemetryQueueStorage<W>>;
  /** A valid window message with this boot and sequence. */
  window(bootId: string, seq: number): W;
}

export function describeTelemetryQueueContract<W extends { readonly bootId: string; readonly seq: number }>(
  name: string,
  harness: TelemetryQueueHarness<W>,
): void {
  const seqs = (queued: readonly QueuedWindowLike[]) => queued.map((q) => q.window.seq);

  describe(`TelemetryQueueStore contract: ${name}`, () => {
    it('lists windows oldest first, forgets those removed, and keeps the rest across a reopen when durable', async () => {
      const storage = await harness.storage();
      const queue = await storage.open({ limit: 100 });
      for (let seq = 0; seq < 5; seq++) await queue.append(harness.window('boot-a', seq));
      const listed = await queue.list();
      expect(seqs(listed)).toEqual([0, 1, 2, 3, 4]);
      expect(new Set(listed.map((q) => q.key)).size).toBe(5);
      expect(listed[2]?.window).toEqual(harness.window('boot-a', 2));
      await queue.remove([listed[1]?.key as string, listed[3]?.key as string, 'no-such-key']);
      expect(seqs(await queue.list())).toEqual([0, 2, 4]);
      const reopened = await storage.open({ limit: 100 });
      expect(seqs(await reopened.list())).toEqual(harness.durable ? [0, 2, 4] : []);
    });

    it('drops the oldest past its bound and counts them once', async () => {
      const queue = await (await harness.storage()).open({ limit: 3 });
      for (let seq = 0; seq < 5; seq++) await queue.append(harness.window('boot-b', seq));
      expect(seqs(await queue.list())).toEqual([2, 3, 4]);
      expect(await queue.takeDropped()).toBe(2);
      expect(await queue.takeDropped()).toBe(0);
    });

    it.skipIf(!harness.corruptible)('removes an entry it cannot read and counts it as dropped, never blocking the others', async () => {
      const storage = await harness.storage();
      const queue = await storage.open({ limit: 100 });
      for (let seq = 0; seq < 3; seq++) await queue.append(harness.window('boot-c', seq));
      const [, middle] = await queue.list();
      await storage.corrupt?.(middle?.key as string);
      expect(seqs(await queue.list())).toEqual([0, 2]);
      expect(await queue.takeDropped()).toBe(1);
      expect(seqs(await queue.list())).toEqual([0, 2]); // gone for good, counted once
      expect(await queue.takeDropped()).toBe(0);
    });

    it('keeps every window of appends that overlap (one operation at a time)', async () => {
      const queue = await (await harness.storage()).open({ limit: 100 });
      await Promise.all(Array.from({ length: 20 }, (_, seq) => queue.append(harness.window('boot-d', seq))));
      expect(seqs(await queue.list()).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    });
  });
}
