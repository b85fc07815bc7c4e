/**
 * The floor for the rollout benchmark, in its own process like the fleet server: a bare aedes
 * broker (no authentication, no database) on a loopback port. It prints `{"port"}` once listening;
 * each `go <n> <bytes>` line on stdin publishes a retained QoS 1 document of that size to
 * `raw/<i>/desired` for i < n and prints `{"seconds","rssMiB"}` once every client has answered on
 * `raw/<i>/reported`.
 */
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { Aedes } from 'aedes';

const broker = await Aedes.createBroker({ concurrency: 1000 });
const tcp = createServer(broker.handle);
await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
process.stdout.write(`${JSON.stringify({ port: (tcp.address() as { port: number }).port })}\n`);

let answers = 0;
let wanted = Number.POSITIVE_INFINITY;
let done: (() => void) | undefined;
broker.on('publish', (packet, client) => {
  if (client && packet.topic.endsWith('/reported') && ++answers === wanted) done?.();
});

for await (const line of createInterface({ input: process.stdin })) {
  const [command, count, bytes] = line.split(' ');
  if (command !== 'go') continue;
  const n = Number(count);
  const payload = Buffer.alloc(Number(bytes), 'x');
  answers = 0;
  wanted = n;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    broker.publish({ cmd: 'publish', topic: `raw/${i}/desired`, payload, qos: 1, retain: true, dup: false }, () => undefined);
    // aedes recurses through its delivery callbacks: 10,000 publishes in one turn overflow the stack.
    if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
  }
  await finished;
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ seconds, rssMiB: process.memoryUsage().rss / 1024 / 1024 })}\n`);
}
