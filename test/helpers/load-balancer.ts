/**
 * A TCP load balancer in front of server replicas, as an operator runs one (HAProxy, an ALB): each
 * new connection goes to the next replica in turn, and to the one after it when that replica does
 * not answer (a replica killed with -9 refuses connections at once). Connections already open stay
 * where they are and end with their replica.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface LoadBalancer {
  readonly url: string;
  /** Connections each backend port has taken. */
  readonly taken: ReadonlyMap<number, number>;
  close(): Promise<void>;
}

export async function startLoadBalancer(backendPorts: readonly number[]): Promise<LoadBalancer> {
  let next = 0;
  const taken = new Map<number, number>(backendPorts.map((port) => [port, 0]));
  const open = new Set<Socket>();
  const server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    client.pause();
    const attempt = (tried: number) => {
      if (tried >= backendPorts.length) {
        client.destroy();
        return;
      }
      const port = backendPorts[next++ % backendPorts.length] as number;
      const upstream = connect({ host: '127.0.0.1', port });
      let connected = false;
      upstream.once('error', () => {
        if (!connected) attempt(tried + 1);
      });
      upstream.once('connect', () => {
        connected = true;
        taken.set(port, (taken.get(port) ?? 0) + 1);
        open.add(upstream);
        upstream.on('close', () => {
          open.delete(upstream);
          client.destroy();
        });
        upstream.on('error', () => upstream.destroy());
        client.on('close', () => upstream.destroy());
        client.pipe(upstream).pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    taken,
    async close() {
      for (const socket of open) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
