/**
 * Assembles the fleet server: database, artifacts, signing key, admin API (fastify) and the
 * embedded MQTT broker. With no configuration it starts and is useful on one machine.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTopicScheme, EdgefleetError, encodeMessage, MESSAGE_TYPES } from '@edgefleet/protocol';
import { writeFileAtomically } from '@edgefleet/protocol/node';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import multipart from '@fastify/multipart';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import Type from 'typebox';
import { createDatabaseArtifactStore } from './artifacts/database.ts';
import { registerArtifactRoutes } from './artifacts/routes.ts';
import { createArtifactStore } from './artifacts/store.ts';
import { registerAuditRoutes } from './audit/routes.ts';
import { createAuthenticator, createFailureLimiter, type Principal, requireScope } from './auth/index.ts';
import { ensureFirstAdminToken, registerTokenRoutes } from './auth/tokens.ts';
import { createEmbeddedBroker } from './broker/embedded.ts';
import { createExternalBroker } from './broker/external.ts';
import { registerBrokerHooks } from './broker/hooks.ts';
import type { FleetBroker } from './broker/index.ts';
import { loadConfig, type ServerConfig } from './config/index.ts';
import type { ServerContext } from './context.ts';
import { registerDashboardRoutes } from './dashboard/routes.ts';
import { createDesiredStateService } from './desired/index.ts';
import { createDeviceAuthenticator } from './devices/credentials.ts';
import { createDeviceHistory } from './devices/history.ts';
import { registerDeviceRoutes } from './devices/routes.ts';
import { createDriftEvaluator, type DriftEvaluator } from './drift/evaluator.ts';
import { registerDriftRoutes } from './drift/routes.ts';
import { registerEvaluationRoutes } from './evaluation/routes.ts';
import { createEvaluationRunner } from './evaluation/runner.ts';
import { registerEventRoutes } from './events/routes.ts';
import { registerFleetRoutes } from './fleet/routes.ts';
import { registerIdempotency } from './http/idempotency.ts';
import { describeRoute, TAGS } from './http/openapi.ts';
import { frameworkError, registerProblemHandlers } from './http/problem.ts';
import { registerRequestLog } from './http/request-log.ts';
import { registerResponseCheck } from './http/response-check.ts';
import { mediaResponse, registerSharedSchemas } from './http/schemas.ts';
import { agreeOnKeySet, loadOrCreateKeys } from './keys/index.ts';
import { stdoutDestination } from './log.ts';
import { createMetrics } from './metrics/index.ts';
import { createModelCheck } from './registry/model-check.ts';
import { registerRegistryRoutes } from './registry/routes.ts';
import { createRolloutEngine, type RolloutEngine } from './rollouts/engine.ts';
import { createDatabaseLease, singleServerLease } from './rollouts/lease.ts';
import { registerRolloutRoutes } from './rollouts/routes.ts';
import { openDatabase } from './store/db.ts';
import { createWriteBehind } from './store/write-behind.ts';
import { createTelemetryIngest, type TelemetryIngest } from './telemetry/ingest.ts';
import { registerTelemetryRoutes } from './telemetry/routes.ts';

export interface FleetServer {
  readonly app: FastifyInstance;
  readonly broker: FleetBroker;
  readonly rollouts: RolloutEngine;
  readonly telemetry: TelemetryIngest;
  readonly drift: DriftEvaluator;
  readonly config: ServerConfig;
  /** http://host:port of the admin API. */
  readonly url: string;
  /**
   * Set only on the start that created the first admin token, for programs that embed the server;
   * it is never logged. People read it from `adminTokenFile`.
   */
  readonly createdAdminToken: string | undefined;
  /** Where that first admin token was written (mode 0600, in the data folder); undefined on other starts. */
  readonly adminTokenFile: string | undefined;
  close(): Promise<void>;
}

export interface CreateServerOptions {
  readonly config?: Partial<ServerConfig>;
  readonly env?: NodeJS.ProcessEnv;
  /** Log to stdout (pino JSON lines), or to the stream given (tests read it); off unless asked. */
  readonly logger?: boolean | { readonly stream: { write(line: string): void }; readonly level?: string };
  /**
   * The clock every time-based decision reads (rollout soaks and offline cut-offs, drift buckets,
   * last-seen and received-at times), in ms since the epoch; tests move it instead of waiting.
   */
  readonly clock?: () => number;
  /** Check every JSON answer against its route's documented response schema (tests: the contract cannot drift). */
  readonly validateResponses?: boolean;
}

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The query string of a route that takes no parameters. */
const NO_QUERY = Type.Object({}, { additionalProperties: false });

export async function createFleetServer(options: CreateServerOptions = {}): Promise<FleetServer> {
  const config = loadConfig(options.env ?? process.env, options.config ?? {});
  const clock = options.clock ?? Date.now;
  const database = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl });
  const { db } = database;
  // With PostgreSQL, artifacts live in it by default: every replica serves every model.
  const artifacts =
    config.artifacts === 'database'
      ? await createDatabaseArtifactStore(db, join(config.dataDir, 'artifacts', 'tmp'))
      : await createArtifactStore(join(config.dataDir, 'artifacts'));
  const keys = await loadOrCreateKeys(config.dataDir);
  // Replicas sign with one key: the first to start records its key set, the others must match it.
  await agreeOnKeySet(db, keys);
  const metrics = createMetrics(db);
  const devices = createDeviceAuthenticator(db);
  const topics = createTopicScheme();
  const authenticate = createAuthenticator(db, config.adminToken, clock);

  const app = Fastify({
    logger:
      options.logger === true
        ? { level: config.logLevel, stream: stdoutDestination() }
        : options.logger
          ? { level: options.logger.level ?? config.logLevel, stream: options.logger.stream }
          : false,
    // One line per request, written when it ends (http/request-log.ts), instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    requestTimeout: config.requestTimeoutMs,
    genReqId: () => randomUUID(),
    // Unknown fields are errors (removeAdditional off), types are not coerced: a wrong body is a 400.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    // Errors the router raises before any route (over-long or undecodable paths) answer problem+json too.
    frameworkErrors: (error, request, reply) => frameworkError(error, request, reply),
  });
  registerProblemHandlers(app);
  registerRequestLog(app);
  registerSharedSchemas(app);
  // Answers are serialized as they are: response schemas document them (and tests check them
  // with validateResponses), they never silently drop a field.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  if (options.validateResponses) registerResponseCheck(app);
  // Bodies are JSON (or multipart, CSV, JSON lines where a route says so): a text/plain body is a
  // 415, not a string that fails the route's schema.
  app.removeContentTypeParser('text/plain');
  // PATCH bodies may say what they are (RFC 7396); they are JSON all the same.
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
  // Unknown query parameters are refused on every API route alike (a misspelt filter must not
  // silently list everything): routes without filters of their own accept none.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/v1/')) {
      route.schema ??= {};
      route.schema.querystring ??= NO_QUERY;
    }
    describeRoute(route);
  });

  const failures = createFailureLimiter(config.authFailuresPerMinute);
  /** Runs a credential check for a request's address: refused outright once it failed too often, counted when it fails. */
  const guarded = async <T>(request: FastifyRequest, check: () => Promise<T>): Promise<T> => {
    failures.check(request.ip);
    try {
      return await check();
    } catch (error) {
      if (error instanceof EdgefleetError && error.code === 'EF_UNAUTHORIZED') failures.failed(request.ip);
      throw error;
    }
  };
  const principal = async (request: FastifyRequest): Promise<Principal> => {
    request.principal ??= await guarded(request, () => authenticate(request.headers.authorization));
    return request.principal;
  };
  let broker: FleetBroker | undefined;
  const brokerOf = (): FleetBroker => {
    if (!broker) throw new EdgefleetError('EF_INTERNAL_ERROR', 'the broker is not started yet');
    return broker;
  };
  const desired = createDesiredStateService({
    db,
    keys,
    broker: brokerOf,
    topic: (deviceId) => topics.build('desired', deviceId),
    manifestTtlMs: config.manifestTtlDays * 24 * 3600 * 1000,
    maxDocumentBytes: config.mqttMaxPayload,
    lockDevices: database.kind === 'postgres',
    log: { warn: (obj, msg) => app.log.warn(obj, msg) },
    now: clock,
  });
  const writes = createWriteBehind(db, { dialect: database.kind, log: app.log });
  const history = createDeviceHistory({ db, log: app.log, now: clock });
  const modelCheck = createModelCheck({ timeoutMs: config.modelLoadTimeoutMs });
  const evaluations = createEvaluationRunner({
    db,
    artifacts,
    scratch: join(config.dataDir, 'evaluations'),
    timeoutMs: config.modelLoadTimeoutMs,
    maxSamples: config.maxEvaluationSamples,
    maxInflatedBytes: config.maxEvaluationBytes,
    log: app.log,
  });
  const context: ServerContext = {
    config,
    db,
    writes,
    history,
    artifacts,
    keys,
    topics,
    devices,
    metrics,
    broker: brokerOf,
    desired,
    modelCheck,
    evaluations,
    requireAdmin: async (request) => requireScope(await principal(request), 'admin'),
    requireRead: async (request) => requireScope(await principal(request), 'read'),
    requireReadOrDevice: async (request) => {
      const basic = /^Basic ([A-Za-z0-9+/=]+)$/.exec(request.headers.authorization ?? '')?.[1];
      if (basic) {
        const row = await guarded(request, () => {
          const decoded = Buffer.from(basic, 'base64').toString('utf8');
          const colon = decoded.indexOf(':');
          // RFC 7617: user-id ":" password. Without a colon there is no secret to check.
          if (colon < 1) throw new EdgefleetError('EF_UNAUTHORIZED', 'unknown device or wrong secret');
          return devices.verify(decoded.slice(0, colon), decoded.slice(colon + 1));
        });
        request.principal = { kind: 'device', id: row.id, scope: 'read' };
        return;
      }
      requireScope(await principal(request), 'read');
    },
    async collectArtifacts() {
      const referenced = new Set((await db.selectFrom('version_artifacts').select('sha256').execute()).map((r) => r.sha256));
      // Evaluation datasets are artifacts too: a champion is evaluated on its challenger's dataset later.
      for (const row of await db.selectFrom('evaluations').select('dataset_sha256').distinct().execute())
        referenced.add(row.dataset_sha256);
      for (const sha of await artifacts.list()) if (!referenced.has(sha)) await artifacts.remove(sha);
    },
  };
  // A crash between storing an upload's bytes and writing its row leaves an unreferenced file.
  await context.collectArtifacts();
  const createdAdminToken = await ensureFirstAdminToken(db, config.adminToken, database.kind);
  // Written where only the server's user can read it, never to stdout, where log shippers collect it.
  const adminTokenFile = createdAdminToken ? join(config.dataDir, 'admin-token') : undefined;
  if (adminTokenFile && createdAdminToken) await writeFileAtomically(adminTokenFile, `${createdAdminToken}\n`); // mode 0600

  await app.register(helmet, {
    // Pages this server sends (the dashboard, the OpenAPI viewer) load scripts and styles from
    // itself only. No upgrade-insecure-requests: a server on a LAN is often plain http.
    contentSecurityPolicy: { useDefaults: true, directives: { 'upgrade-insecure-requests': null } },
    crossOriginResourcePolicy: { policy: config.corsOrigins.length > 0 ? 'cross-origin' : 'same-origin' },
  });
  if (config.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: [...config.corsOrigins],
      allowedHeaders: ['authorization', 'content-type', 'range', 'if-none-match'],
      exposedHeaders: ['etag', 'content-range'],
    });
  }
  await app.register(rateLimit, {
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    // Devices download artifacts and enroll at fleet scale; the limit guards the admin API.
    // The broker asks about every connection and topic: its hooks are not the admin's API either.
    allowList: (request) =>
      request.url.startsWith('/v1/artifacts/') ||
      request.url.startsWith('/v1/broker/') ||
      request.url === '/healthz' ||
      request.url === '/readyz',
  });
  await app.register(multipart, {
    limits: {
      fileSize: Math.max(config.maxModelBytes, config.maxReferenceBytes),
      files: 2,
      fields: 16,
      fieldSize: 8 * 1024 * 1024,
      parts: 18,
    },
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'edgefleet fleet server',
        version: PACKAGE_VERSION,
        description:
          'Model registry, devices, rollouts, telemetry and drift. Errors are RFC 9457 problem+json with a stable EF_ code (docs/errors.md). ' +
          'Lists page with `limit` and `cursor` (the `next` of the previous page). Creating POSTs honour `Idempotency-Key`; ' +
          'mutable resources carry an `ETag` and honour `If-Match`.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      tags: [...TAGS],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'an admin or read-only token (efa_…), or EDGEFLEET_ADMIN_TOKEN' },
          device: { type: 'http', scheme: 'basic', description: 'a device: its id and secret' },
          brokerHook: { type: 'http', scheme: 'bearer', description: 'the external broker: EDGEFLEET_BROKER_HOOK_SECRET' },
        },
      },
      security: [{ bearer: [] }],
    },
    // Routes that read their own body (multipart, CSV) describe it for the document only.
    transform: ({ schema, url, route }) => {
      const docBody = (route as { config?: { docBody?: unknown } } | undefined)?.config?.docBody;
      return { schema: docBody ? ({ ...schema, body: docBody } as typeof schema) : schema, url };
    },
    // Shared schemas (app.addSchema) become components named by their $id.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  registerDashboardRoutes(app, config.dashboard, app.log);

  app.addHook('onResponse', async (request, reply) => {
    metrics.observeRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  app.get(
    '/healthz',
    {
      schema: {
        summary: 'The process is up',
        response: { 200: Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false }) },
      },
    },
    async () => ({ status: 'ok' }),
  );
  const Ready = Type.Object(
    { status: Type.Literal('ready'), broker: Type.Object({ clients: Type.Integer() }, { additionalProperties: false }) },
    { additionalProperties: false },
  );
  app.get('/readyz', { schema: { summary: 'The database and the broker answer', response: { 200: Ready } } }, async () => {
    try {
      await db.selectFrom('models').select('name').limit(1).execute();
    } catch (cause) {
      throw new EdgefleetError('EF_STORE_UNAVAILABLE', `the database does not answer: ${(cause as Error).message}`, { cause });
    }
    if (!broker) throw new EdgefleetError('EF_STORE_UNAVAILABLE', 'the MQTT broker is not started yet');
    return { status: 'ready', broker: { clients: broker.connectedCount } };
  });
  app.get(
    '/metrics',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'Prometheus metrics (needs a read token: see docs/fleet-server.md for the scrape config)',
        response: { 200: mediaResponse('text/plain', 'the Prometheus text exposition format') },
      },
    },
    async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  // Several replicas share PostgreSQL: leases in it say which one drives each rollout and the
  // drift pass. SQLite means one server, which holds them all.
  const lease = database.kind === 'postgres' ? createDatabaseLease({ db }) : singleServerLease;
  const rollouts = createRolloutEngine({
    db,
    desired,
    writes,
    log: app.log,
    now: clock,
    lease,
    command: async (deviceIds, command) => {
      const issuedAt = new Date(clock()).toISOString();
      for (const deviceId of deviceIds) {
        const message = { type: MESSAGE_TYPES.command, id: randomUUID(), issuedAt, command };
        await brokerOf().publish(topics.build('commands', deviceId), encodeMessage('commands', message), { qos: 1 });
      }
    },
  });
  const telemetry = createTelemetryIngest({
    db,
    broker: brokerOf,
    topics,
    metrics,
    log: app.log,
    now: clock,
    // PostgreSQL: three batches of up to 1,000 windows at once, on three of the pool's ten connections.
    dialect: database.kind,
  });
  metrics.attach({ gateReadings: () => rollouts.gateReadings(), telemetry: () => telemetry.counts });
  const drift = createDriftEvaluator({
    db,
    bucketMs: config.driftBucketSeconds * 1000,
    everyMs: config.driftEvaluateMs,
    alertWindows: config.driftAlertWindows,
    retentionDays: config.telemetryRetentionDays,
    webhook: config.webhookUrl && config.webhookSecret ? { url: config.webhookUrl, secret: config.webhookSecret } : undefined,
    log: app.log,
    now: clock,
    lease,
  });
  // Creating POSTs honour Idempotency-Key: a retried request gets the first answer, never a second resource.
  registerIdempotency(app, {
    db,
    now: clock,
    routes: [
      '/v1/devices',
      '/v1/enroll',
      '/v1/enrollment-tokens',
      '/v1/admin-tokens',
      '/v1/models/:name/versions',
      '/v1/models/:name/versions/:version/reference',
      '/v1/models/:name/versions/:version/evaluations',
      '/v1/rollouts',
    ],
  });
  await registerAuditRoutes(app, context);
  await registerTokenRoutes(app, context, clock);
  await registerRegistryRoutes(app, context);
  await registerDeviceRoutes(app, context);
  await registerFleetRoutes(app, context);
  await registerRolloutRoutes(app, context, rollouts);
  await registerEvaluationRoutes(app, context);
  await registerArtifactRoutes(app, context);
  await registerTelemetryRoutes(app, context);
  await registerDriftRoutes(app, context, drift);
  await registerEventRoutes(app, context, rollouts, drift);
  await registerBrokerHooks(app, context);

  await app.listen({ host: config.host, port: config.port });
  // Evaluations queued before a restart (or left by a replica that died) run now.
  evaluations.kick();
  broker = config.brokerUrl
    ? await createExternalBroker({ config, writes, topics, metrics, http: app.server, log: app.log, now: clock })
    : await createEmbeddedBroker({ config, writes, topics, devices, metrics, http: app.server, log: app.log, failures, now: clock });
  // The embedded broker keeps retained messages in memory, and an external one may have lost them
  // (restarted without persistence): give it every device's current document, and again whenever
  // the connection to an external broker comes back.
  const republish = async () => {
    const republished = await desired.republishAll();
    if (republished > 0) app.log.info({ devices: republished }, 'republished desired state');
  };
  await republish();
  broker.onReconnect(() => {
    republish().catch((error: unknown) => app.log.warn({ err: error }, 'republishing desired state failed'));
    // What devices published while the broker was going down may never have reached a replica.
    rollouts.resync();
  });
  broker.onDeviceMessage((address, payload, message) => rollouts.observe(address, payload, message));
  broker.onDeviceMessage((address, payload, message) => telemetry.observe(address, message, payload));
  broker.onDeviceMessage((address, _payload, message) => history.observe(address, message));
  // Rollouts that were running when the server stopped continue from their stored state.
  rollouts.start();
  drift.start();
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host}:${port}`;

  return {
    app,
    broker,
    rollouts,
    telemetry,
    drift,
    config,
    url,
    createdAdminToken,
    adminTokenFile,
    async close() {
      // Producers of MQTT messages stop first, so nothing publishes into a closing broker.
      desired.stop();
      await rollouts.stop();
      await drift.close();
      // Another replica takes the rollouts and the drift pass over now rather than when the leases expire.
      await lease.release().catch((error: unknown) => app.log.warn({ err: error }, 'could not release leases'));
      await telemetry.flush(); // stored and acknowledged while the broker still runs
      await broker?.close();
      await telemetry.close();
      await history.close();
      await writes.close();
      await evaluations.close();
      await app.close();
      await modelCheck.close();
      await database.close();
    },
  };
}
