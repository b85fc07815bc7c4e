/** The fleetctl executable: runs one command line and exits with its code. */
import { main } from './cli.ts';

// Output piped into a reader that stops early (fleetctl devices ls | head) ends quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw error;
  });
}
process.exitCode = await main(process.argv.slice(2));
