/** Prometheus metrics (prom-client), on a registry of this server's own: no global state between instances. */
import type { Kysely } from 'kysely';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { latestScores } from '../drift/scoring.ts';
import type { Database } from '../store/schema.ts';

/** What the metrics read from the parts started after them (the rollout engine, the ingest). */
export interface MetricSources {
  readonly gateReadings: () => readonly {
    readonly rolloutId: string;
    readonly model: string;
    readonly version: string;
    readonly stage: number;
    readonly stages: number;
    readonly gates: readonly { readonly name: string; readonly value: number | null; readonly threshold: number }[];
  }[];
  readonly telemetry: () => { readonly stored: number; readonly duplicates: number; readonly refused: number };
}

const DRIFT_STATUS = { ok: 0, warning: 1, drifting: 2 } as const;

export interface ServerMetrics {
  readonly registry: Registry;
  attach(sources: MetricSources): void;
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
  const messageCounters = new Map<string, { inc(): void }>();
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
  let sources: MetricSources | undefined;
  const live = ['running', 'paused', 'rolling_back'] as const;
  new Gauge({
    name: 'edgefleet_rollout_devices',
    help: 'Devices of each live rollout by status (pending, assigned, active, failed, rolled_back)',
    labelNames: ['rollout', 'model', 'version', 'state', 'status'],
    registers: [registry],
    async collect() {
      const rows = await db
        .selectFrom('rollout_devices')
        .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
        .select([
          'rollouts.id',
          'rollouts.model',
          'rollouts.version',
          'rollouts.state',
          'rollout_devices.status',
          db.fn.countAll<number>().as('n'),
        ])
        .where('rollouts.state', 'in', live)
        .groupBy(['rollouts.id', 'rollouts.model', 'rollouts.version', 'rollouts.state', 'rollout_devices.status'])
        .execute();
      this.reset();
      for (const row of rows) {
        this.set({ rollout: row.id, model: row.model, version: row.version, state: row.state, status: row.status }, Number(row.n));
      }
    },
  });
  new Gauge({
    name: 'edgefleet_rollout_stage',
    help: 'The stage a running rollout is in (0-based); edgefleet_rollout_stages has how many it has',
    labelNames: ['rollout', 'model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of sources?.gateReadings() ?? []) this.set({ rollout: r.rolloutId, model: r.model, version: r.version }, r.stage);
    },
  });
  new Gauge({
    name: 'edgefleet_rollout_stages',
    help: 'How many stages a running rollout has',
    labelNames: ['rollout', 'model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of sources?.gateReadings() ?? []) this.set({ rollout: r.rolloutId, model: r.model, version: r.version }, r.stages);
    },
  });
  new Gauge({
    name: 'edgefleet_rollout_gate_value',
    help: 'A running rollout gate as last measured in its current stage (failure_rate, devices_reporting, latency_ratio)',
    labelNames: ['rollout', 'model', 'version', 'gate'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of sources?.gateReadings() ?? [])
        for (const gate of r.gates)
          if (gate.value !== null) this.set({ rollout: r.rolloutId, model: r.model, version: r.version, gate: gate.name }, gate.value);
    },
  });
  new Gauge({
    name: 'edgefleet_rollout_gate_threshold',
    help: 'The threshold of a running rollout gate in its current stage (a maximum, or a minimum for devices_reporting)',
    labelNames: ['rollout', 'model', 'version', 'gate'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of sources?.gateReadings() ?? [])
        for (const gate of r.gates) this.set({ rollout: r.rolloutId, model: r.model, version: r.version, gate: gate.name }, gate.threshold);
    },
  });
  new Gauge({
    name: 'edgefleet_drift_status',
    help: 'Drift status of each model version and device group (* every device): 0 ok, 1 warning (last bucket drifted), 2 drifting (alert firing)',
    labelNames: ['model', 'version', 'group'],
    registers: [registry],
    async collect() {
      const latest = await latestScores(db);
      const firing = await db.selectFrom('drift_alerts').select(['model', 'version', 'group_tag']).where('state', '=', 'firing').execute();
      const alerting = new Set(firing.map((a) => `${a.model}\n${a.version}\n${a.group_tag}`));
      this.reset();
      for (const row of latest) {
        const status = alerting.has(`${row.model}\n${row.version}\n${row.group_tag}`) ? 'drifting' : row.drifted === 1 ? 'warning' : 'ok';
        this.set({ model: row.model, version: row.version, group: row.group_tag }, DRIFT_STATUS[status]);
      }
    },
  });
  new Gauge({
    name: 'edgefleet_drift_score',
    help: 'Share of features that drifted in the latest bucket of each model version and device group, 0-1',
    labelNames: ['model', 'version', 'group'],
    registers: [registry],
    async collect() {
      const latest = await latestScores(db);
      this.reset();
      for (const row of latest) this.set({ model: row.model, version: row.version, group: row.group_tag }, row.score);
    },
  });
  const counted = { stored: 0, duplicates: 0, refused: 0 };
  new Counter({
    name: 'edgefleet_telemetry_windows_total',
    help: 'Telemetry windows received: stored, duplicate (a resend already stored) or refused; rate() gives the ingest rate',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      const now = sources?.telemetry();
      if (!now) return;
      for (const [result, key] of [
        ['stored', 'stored'],
        ['duplicate', 'duplicates'],
        ['refused', 'refused'],
      ] as const) {
        const delta = now[key] - counted[key];
        if (delta > 0) this.inc({ result }, delta);
        counted[key] = now[key];
      }
    },
  });
  return {
    registry,
    attach(attached) {
      sources = attached;
    },
    observeRequest(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ method, route }, seconds);
    },
    mqttMessage: (direction, kind) => {
      // One counter per direction and topic kind (a handful), looked up once: every message counts.
      const key = `${direction}/${kind}`;
      let counter = messageCounters.get(key);
      if (!counter) {
        counter = messages.labels({ direction, kind });
        messageCounters.set(key, counter);
      }
      counter.inc();
    },
    mqttRefused: (reason) => refused.inc({ reason }),
    setMqttClients: (count) => clients.set(count),
  };
}
