/**
 * The floor for the ingest benchmark, in its own process like the fleet server: a bare aedes broker
 * (no authentication, no database, nothing decoded) on a loopback port. Prints `{"port"}` once
 * listening and runs until its stdin closes.
 */
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const broker = await Aedes.createBroker();
const tcp = createServer(broker.handle);
await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
process.stdout.write(`${JSON.stringify({ port: (tcp.address() as { port: number }).port, pid: process.pid })}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
