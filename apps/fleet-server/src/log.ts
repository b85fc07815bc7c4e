/**
 * Where the server's pino lines go: standard output, written synchronously. pino's default
 * (asynchronous) destination flushes on exit with sonic-boom's flushSync, which retries a write
 * that failed with EPIPE forever: a server whose log reader went away (a closed pipe, `| head`)
 * then never exits on SIGTERM. A synchronous destination has nothing left to flush at exit, and
 * pino's broken-pipe filter turns writes into no-ops once the reader is gone.
 */
import { pino } from 'pino';

export function stdoutDestination(): pino.DestinationStream {
  return pino.destination({ dest: 1, sync: true });
}
