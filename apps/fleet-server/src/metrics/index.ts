/** Prometheus metrics (prom-client), on a registry of this server's own: no global state between instances. */
import type { Kysely } from 'kysely';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Database } from '../store/schema.ts';

export interface ServerMetrics {
  readonly registry: Registry;
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  mqttMessage(direction: 'in' | 'out', kind: string): void;
  mqttRefused(reason: string): void;
  setMqttClients(count: number): void;
}

export function createMetrics(db: Kysely<Database>): ServerMetrics {
  const registry = new Registry();
  // The Node.js client's standard names (process_*, nodejs_*), unprefixed, as every Node.js
  // dashboard expects them; the job label says which process they belong to.
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'edgefleet_http_requests_total',
    help: 'HTTP requests',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'edgefleet_http_request_duration_seconds',
    help: 'HTTP request duration',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  const messages = new Counter({
    name: 'edgefleet_mqtt_messages_total',
    help: 'MQTT messages',
    labelNames: ['direction', 'kind'],
    registers: [registry],
  });
  const refused = new Counter({
    name: 'edgefleet_mqtt_refused_total',
    help: 'MQTT connections, publishes and subscriptions refused',
    labelNames: ['reason'],
    registers: [registry],
  });
  const clients = new Gauge({
    name: 'edgefleet_mqtt_clients_connected',
    help: 'MQTT clients connected to the embedded broker',
    registers: [registry],
  });
  new Gauge({
    name: 'edgefleet_registry_models',
    help: 'Models in the registry',
    registers: [registry],
    async collect() {
      const row = await db.selectFrom('models').select(db.fn.countAll<number>().as('n')).executeTakeFirst();
      this.set(Number(row?.n ?? 0));
    },
  });
  new Gauge({
    name: 'edgefleet_registry_model_versions',
    help: 'Model versions in the registry',
    registers: [registry],
    async collect() {
      const row = await db.selectFrom('model_versions').select(db.fn.countAll<number>().as('n')).executeTakeFirst();
      this.set(Number(row?.n ?? 0));
    },
  });
  new Gauge({
    name: 'edgefleet_devices',
    help: 'Enrolled devices by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const rows = await db
        .selectFrom('devices')
        .select(['status', db.fn.countAll<number>().as('n')])
        .groupBy('status')
        .execute();
      this.reset();
      for (const row of rows) this.set({ status: row.status }, Number(row.n));
    },
  });
  return {
    registry,
    observeRequest(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ method, route }, seconds);
    },
    mqttMessage: (direction, kind) => messages.inc({ direction, kind }),
    mqttRefused: (reason) => refused.inc({ reason }),
    setMqttClients: (count) => clients.set(count),
  };
}
