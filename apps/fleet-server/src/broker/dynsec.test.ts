import type { MqttClient } from 'mqtt';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { createDynsecControl, DYNSEC_SILENCE_MS } from './dynsec.ts';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A client that records what the control publishes. */
function recordingClient() {
  const sent: { commands: { command: string; correlationData: string }[] }[] = [];
  const client = {
    publish(_topic: string, body: string, _options: unknown, callback: (error?: Error) => void) {
      sent.push(JSON.parse(body));
      callback();
    },
  } as unknown as MqttClient;
  return { client, sent };
}

const answer = (correlationData: string) => Buffer.from(JSON.stringify({ responses: [{ command: 'createClient', correlationData }] }));

it('waits as long as the broker keeps answering (a large file is slow to save), and gives up only after a silence', async () => {
  // Mosquitto 2.0 saves its whole file after each command: with thousands of devices registered,
  // a batch takes longer than the silence allowed, but the broker is answering all along.
  const { client, sent } = recordingClient();
  const control = createDynsecControl(client);
  const first = control.run({ command: 'createClient', username: 'a' });
  await vi.advanceTimersByTimeAsync(50);
  const second = control.run({ command: 'createClient', username: 'b' });
  let secondSettled: unknown;
  second.then(
    (r) => (secondSettled = r),
    (e) => (secondSettled = e),
  );
  await vi.advanceTimersByTimeAsync(50);
  expect(sent).toHaveLength(2);
  const [a, b] = sent.map((m) => m.commands[0]?.correlationData as string);

  await vi.advanceTimersByTimeAsync(DYNSEC_SILENCE_MS * 0.8);
  control.handleResponse(answer(a as string));
  await expect(first).resolves.toMatchObject({ correlationData: a });
  // Past the silence since `second` was sent, but not since the broker last answered: still waiting.
  await vi.advanceTimersByTimeAsync(DYNSEC_SILENCE_MS * 0.8);
  expect(secondSettled).toBeUndefined();
  control.handleResponse(answer(b as string));
  await expect(second).resolves.toMatchObject({ correlationData: b });

  // A broker that says nothing at all: refused after the silence, with the code and the reason.
  const third = control.run({ command: 'createClient', username: 'c' });
  const refused = expect(third).rejects.toMatchObject({ code: 'EF_BROKER_UNAVAILABLE', message: expect.stringContaining('no answer') });
  await vi.advanceTimersByTimeAsync(DYNSEC_SILENCE_MS + 2_000);
  await refused;
  control.close();
});
