/**
 * A real three-node NATS cluster with JetStream and its MQTT listener (Debian's `nats-server`
 * 2.9), on loopback ports of its own, for the tests that try it as the fleet's clustered broker.
 * Users are static (the configuration file): the server's and the devices' given here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './mosquitto.ts';

export const NATS_BIN = '/usr/sbin/nats-server';

export function natsMissing(): string | undefined {
  return existsSync(NATS_BIN) ? undefined : `${NATS_BIN} is not installed (apt-get install -y nats-server)`;
}

export interface NatsUser {
  readonly user: string;
  readonly password: string;
  /** NATS subjects (MQTT topic a/b is subject a.b); everything when absent. */
  readonly publish?: readonly string[];
  readonly subscribe?: readonly string[];
}

export interface NatsNode {
  readonly name: string;
  readonly mqttUrl: string;
  log(): string;
  kill(): Promise<void>;
}

export interface NatsCluster {
  readonly nodes: readonly NatsNode[];
  stop(): Promise<void>;
}

export async function startNatsCluster(users: readonly NatsUser[]): Promise<NatsCluster> {
  const missing = natsMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), 'edgefleet-nats-'));
  const ports = await Promise.all(Array.from({ length: 9 }, () => freePort()));
  const routes = [3, 4, 5].map((i) => `nats-route://127.0.0.1:${ports[i]}`).join(', ');
  const permissions = (u: NatsUser) =>
    u.publish || u.subscribe
      ? `, permissions: { publish: ${JSON.stringify(u.publish ?? [])}, subscribe: ${JSON.stringify([...(u.subscribe ?? []), '$MQTT.sub.>'])} }`
      : '';
  const children: ChildProcess[] = [];
  const nodes: NatsNode[] = [];
  for (let i = 0; i < 3; i++) {
    const name = `n${i + 1}`;
    const conf = join(dir, `${name}.conf`);
    const logFile = join(dir, `${name}.log`);
    writeFileSync(
      conf,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${ports[i]}`,
        `jetstream { store_dir: "${join(dir, `js-${name}`)}" }`,
        `cluster { name: edgefleet, listen: 127.0.0.1:${ports[3 + i]}, routes: [ ${routes} ] }`,
        `mqtt { listen: 127.0.0.1:${ports[6 + i]} }`,
        `authorization { users: [ ${users.map((u) => `{ user: ${JSON.stringify(u.user)}, password: ${JSON.stringify(u.password)}${permissions(u)} }`).join(', ')} ] }`,
        '',
      ].join('\n'),
    );
    const child = spawn(NATS_BIN, ['-c', conf, '-l', logFile], { stdio: 'ignore' });
    children.push(child);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    nodes.push({
      name,
      mqttUrl: `mqtt://127.0.0.1:${ports[6 + i]}`,
      log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
      async kill() {
        child.kill('SIGKILL');
        await exited;
      },
    });
  }
  // Ready when every node listens for MQTT and JetStream has a meta leader (retained messages live in JetStream).
  const deadline = Date.now() + 30_000;
  while (
    !nodes.every((n) => n.log().includes('Listening for MQTT clients')) ||
    !nodes.some((n) => /JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/.test(n.log()))
  ) {
    if (Date.now() > deadline)
      throw new Error(`the NATS cluster did not come up: ${nodes.map((n) => n.log().slice(-800)).join('\n---\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => n.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
