import type { Readable } from 'node:stream';
import { Aedes } from 'aedes';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { indexRetainedByTopic, type RetainedPersistence } from './retained-index.ts';

const brokers: Aedes[] = [];

/** aedes' own memory persistence, as the embedded broker gets it. */
async function persistence(): Promise<RetainedPersistence> {
  const broker = await Aedes.createBroker();
  brokers.push(broker);
  return (broker as unknown as { persistence: RetainedPersistence }).persistence;
}

afterAll(async () => {
  await Promise.all(brokers.map((broker) => new Promise<void>((resolve) => broker.close(() => resolve()))));
});

async function topics(stream: Readable): Promise<string[]> {
  const found: string[] = [];
  for await (const packet of stream) found.push((packet as { topic: string }).topic);
  return found.sort();
}

const packet = (topic: string, payload: string) => ({
  cmd: 'publish' as const,
  topic,
  payload: Buffer.from(payload),
  qos: 1 as const,
  retain: true,
  dup: false,
  brokerId: 'test',
  brokerCounter: 1,
});

describe('retained messages by exact topic', () => {
  it('answers every subscription as aedes does, exact or wildcard, after stores and deletions', async () => {
    const level = fc.constantFrom('ef', 'v1', 'd1', 'd2', 'desired', 'reported', '');
    const topic = fc.array(level, { minLength: 1, maxLength: 4 }).map((levels) => levels.join('/'));
    const pattern = fc.oneof(
      topic,
      fc
        .tuple(fc.array(fc.oneof(level, fc.constant('+')), { minLength: 1, maxLength: 4 }), fc.boolean())
        .map(([levels, rest]) => [...levels, ...(rest ? ['#'] : [])].join('/')),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(topic, fc.constantFrom('', 'a', 'b')), { maxLength: 20 }),
        fc.array(pattern, { minLength: 1, maxLength: 3 }),
        async (stores, patterns) => {
          const plain = await persistence();
          const indexed = indexRetainedByTopic(await persistence());
          for (const [t, payload] of stores) {
            await plain.storeRetained(packet(t, payload));
            await indexed.storeRetained(packet(t, payload));
          }
          expect(await topics(indexed.createRetainedStreamCombi(patterns))).toEqual(
            await topics(plain.createRetainedStreamCombi(patterns)),
          );
          for (const p of patterns) {
            expect(await topics(indexed.createRetainedStream(p))).toEqual(await topics(plain.createRetainedStream(p)));
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('never searches the retained messages for exact topics, and still does for wildcards', async () => {
    const inner = await persistence();
    let searches = 0;
    const search = inner.createRetainedStreamCombi.bind(inner);
    inner.createRetainedStreamCombi = (patterns) => {
      searches++;
      return search(patterns);
    };
    const indexed = indexRetainedByTopic(inner);
    for (let i = 0; i < 1000; i++) await indexed.storeRetained(packet(`ef/v1/d${i}/desired`, `doc ${i}`));
    expect(await topics(indexed.createRetainedStreamCombi(['ef/v1/d7/desired', 'ef/v1/d7/telemetry-ack']))).toEqual(['ef/v1/d7/desired']);
    expect(searches).toBe(0);
    expect(await topics(indexed.createRetainedStreamCombi(['ef/v1/+/desired']))).toHaveLength(1000);
    expect(searches).toBe(1);
    // Deleted by an empty retained payload, in both.
    await indexed.storeRetained(packet('ef/v1/d7/desired', ''));
    expect(await topics(indexed.createRetainedStreamCombi(['ef/v1/d7/desired']))).toEqual([]);
    expect(await topics(indexed.createRetainedStreamCombi(['ef/v1/+/desired']))).toHaveLength(999);
  });
});
