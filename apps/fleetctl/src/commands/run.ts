import type { Command } from 'commander';
import type { Context } from '../context.ts';

/** Runs a command's action with its context; errors become messages and exit codes (cli.ts). */
export type Run = (command: Command, action: (ctx: Context) => Promise<void>) => Promise<void>;
