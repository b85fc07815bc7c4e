/**
 * `edgefleet-server`: starts the fleet server with embedded defaults (SQLite, local artifacts,
 * embedded MQTT broker) and prints where to reach it. `--help` lists every setting, `--version`
 * prints the version. SIGTERM and SIGINT stop it cleanly: devices are disconnected, the database
 * is closed, and it exits 0.
 */
import { readFileSync } from 'node:fs';
import { helpText } from '../config/index.ts';
import { createFleetServer } from '../server.ts';

// src/cli/main.ts and dist/cli/main.js are both two folders below the package.json.
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

async function main(args: readonly string[]): Promise<void> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(helpText(version));
    return;
  }
  if (args.includes('--version') || args.includes('-v')) {
    process.stdout.write(`${version}\n`);
    return;
  }
  if (args.length > 0) {
    process.stderr.write(
      `edgefleet-server: unknown argument "${args[0]}"; it takes no arguments (settings are environment variables, see --help)\n`,
    );
    process.exit(2);
  }
  const server = await createFleetServer({ logger: true });
  const lines = [
    `edgefleet fleet server ${version} is running`,
    `  admin API      ${server.url}   (OpenAPI: ${server.url}/docs)`,
    `  MQTT (TCP)     ${server.broker.urls.tcp}`,
    `  MQTT (WS)      ${server.broker.urls.ws}`,
    `  data folder    ${server.config.dataDir}`,
  ];
  if (server.adminTokenFile) {
    lines.push(
      '',
      `  the first admin token is in ${server.adminTokenFile} (readable by this user only)`,
      `  use it as: Authorization: Bearer $(cat ${server.adminTokenFile})`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.app.log.info({ signal }, 'shutting down');
    try {
      await server.close();
      server.app.log.info('stopped');
      process.exit(0);
    } catch (error) {
      server.app.log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`edgefleet-server failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
