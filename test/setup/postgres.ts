/**
 * vitest global setup: a private PostgreSQL for the tests that run on it (the server database
 * contract, the server on PostgreSQL). Starts its own cluster (initdb into a temp folder, `pg_ctl
 * start` on a free loopback port; as the `postgres` user when run as root, which PostgreSQL refuses to be),
 * sets EDGEFLEET_TEST_DATABASE_URL for the test processes to create their own databases in, and
 * stops and deletes it at the end. An EDGEFLEET_TEST_DATABASE_URL already set is used as it is.
 * Without PostgreSQL binaries nothing starts and those tests say why they are skipped (the test
 * command installs Debian's `postgresql`: scripts/ensure-system-deps.sh).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@edgefleet/test-utils/brokers';

function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.EDGEFLEET_TEST_DATABASE_URL || process.env.EDGEFLEET_TEST_POSTGRES === 'off') return undefined;
  const bin = postgresBin();
  if (!bin) return undefined;
  const root = process.getuid?.() === 0;
  // As root, PostgreSQL runs as its own user: the folder is theirs.
  const asUser = (command: string, args: string[]) =>
    (root ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]) as [string, string[]];
  const dir = mkdtempSync(join(tmpdir(), 'edgefleet-pg-'));
  chmodSync(dir, 0o777);
  if (root) spawnSync('chown', ['postgres', dir]);
  const data = join(dir, 'data');
  const init = spawnSync(
    ...asUser(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']),
    {
      encoding: 'utf8',
    },
  );
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
  const port = await freePort();
  // pg_ctl starts the server in the background and waits until it accepts connections; stopping
  // goes through pg_ctl too (a signal to `runuser` would not reach the server behind it).
  // Durability is PostgreSQL's own business here: a test cluster needs no fsync.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300`;
  const pgCtl = join(bin, 'pg_ctl');
  const start = spawnSync(...asUser(pgCtl, ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '30', 'start']), {
    encoding: 'utf8',
  });
  if (start.status !== 0) throw new Error(`postgres did not start: ${start.stderr || start.stdout}`);
  process.env.EDGEFLEET_TEST_DATABASE_URL = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return async () => {
    spawnSync(...asUser(pgCtl, ['-D', data, '-m', 'immediate', '-w', '-t', '30', 'stop']));
    rmSync(dir, { recursive: true, force: true });
  };
}
