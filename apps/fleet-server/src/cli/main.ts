/**
 * `edgefleet-server`: starts the fleet server with embedded defaults (SQLite, local artifacts,
 * embedded MQTT broker) and prints where to reach it. `--help` lists every setting.
 */
import { helpText } from '../config/index.ts';
import { createFleetServer } from '../server.ts';

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(helpText());
    return;
  }
  const server = await createFleetServer({ logger: true });
  const lines = [
    'edgefleet fleet server is running',
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
  const stop = async (signal: string) => {
    server.app.log.info({ signal }, 'shutting down');
    await server.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`edgefleet-server failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
