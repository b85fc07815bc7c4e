/** fleetctl as a library: run a command line and get its exit code. */
export { buildProgram, main } from './cli.ts';
export { EXIT } from './exit.ts';
