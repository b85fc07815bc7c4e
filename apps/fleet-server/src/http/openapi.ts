/**
 * The OpenAPI 3.1 document is the contract of the admin API (fleetctl, the dashboard and the
 * typed client are generated from it or checked against it). Every operation has a stable
 * operationId and a tag from this table; a route missing from it, or without a response schema,
 * stops the server from starting, so the document cannot silently fall behind the routes.
 * Public routes carry no security requirement; device routes accept the device's own credential.
 */
import type { RouteOptions } from 'fastify';
import { ProblemResponse } from './schemas.ts';

export const TAGS = [
  { name: 'models', description: 'The model registry: versions, signed manifests, aliases' },
  { name: 'devices', description: 'Devices, their history and desired state, enrollment' },
  { name: 'fleet', description: 'The fleet at a glance: summary and compliance' },
  { name: 'rollouts', description: 'Staged rollouts with gates' },
  { name: 'telemetry', description: 'Telemetry windows and reference profiles' },
  { name: 'drift', description: 'Drift scores, status and alerts' },
  { name: 'tokens', description: 'Admin, read-only and enrollment tokens' },
  { name: 'audit', description: 'Who changed what, when' },
  { name: 'artifacts', description: 'Model files and golden vectors, by hash' },
  { name: 'quality', description: 'Evaluations of versions on labelled held-out data, and each model’s promotion policy' },
  { name: 'events', description: 'Server-sent events: what changes, as it changes' },
  { name: 'operations', description: 'Health, readiness and metrics' },
  { name: 'broker', description: 'Hooks an external broker calls to authenticate devices and authorize their topics' },
] as const;

type Tag = (typeof TAGS)[number]['name'];
type Access = 'token' | 'public' | 'device' | 'broker';

interface Operation {
  readonly id: string;
  readonly tag: Tag;
  /** token (the default): a bearer token; public: none; device: a bearer token or the device's Basic credential; broker: the hook secret. */
  readonly access?: Access;
}

/** Every route: `METHOD url` as registered → its operationId and tag. */
export const OPERATIONS: Readonly<Record<string, Operation>> = {
  'GET /healthz': { id: 'getHealth', tag: 'operations', access: 'public' },
  'GET /readyz': { id: 'getReadiness', tag: 'operations', access: 'public' },
  'GET /metrics': { id: 'getMetrics', tag: 'operations' },
  'GET /v1/whoami': { id: 'whoami', tag: 'tokens' },
  'POST /v1/admin-tokens': { id: 'createAdminToken', tag: 'tokens' },
  'GET /v1/admin-tokens': { id: 'listAdminTokens', tag: 'tokens' },
  'GET /v1/admin-tokens/:id': { id: 'getAdminToken', tag: 'tokens' },
  'POST /v1/admin-tokens/:id/revoke': { id: 'revokeAdminToken', tag: 'tokens' },
  'POST /v1/enrollment-tokens': { id: 'createEnrollmentToken', tag: 'tokens' },
  'GET /v1/enrollment-tokens': { id: 'listEnrollmentTokens', tag: 'tokens' },
  'GET /v1/enrollment-tokens/:id': { id: 'getEnrollmentToken', tag: 'tokens' },
  'POST /v1/enrollment-tokens/:id/revoke': { id: 'revokeEnrollmentToken', tag: 'tokens' },
  'GET /v1/audit': { id: 'listAudit', tag: 'audit' },
  'GET /v1/models': { id: 'listModels', tag: 'models' },
  'POST /v1/models/:name/versions': { id: 'uploadModelVersion', tag: 'models' },
  'GET /v1/models/:name/versions': { id: 'listModelVersions', tag: 'models' },
  'GET /v1/models/:name/versions/:version': { id: 'getModelVersion', tag: 'models' },
  'DELETE /v1/models/:name/versions/:version': { id: 'deleteModelVersion', tag: 'models' },
  'GET /v1/models/:name/aliases': { id: 'listAliases', tag: 'models' },
  'GET /v1/models/:name/aliases/:alias': { id: 'getAlias', tag: 'models' },
  'PUT /v1/models/:name/aliases/:alias': { id: 'setAlias', tag: 'models' },
  'GET /v1/models/:name/compliance': { id: 'getCompliance', tag: 'fleet' },
  'GET /v1/fleet/summary': { id: 'getFleetSummary', tag: 'fleet' },
  'POST /v1/devices': { id: 'createDevice', tag: 'devices' },
  'GET /v1/devices': { id: 'listDevices', tag: 'devices' },
  'GET /v1/devices/:id': { id: 'getDevice', tag: 'devices' },
  'PATCH /v1/devices/:id': { id: 'updateDevice', tag: 'devices' },
  'DELETE /v1/devices/:id': { id: 'deleteDevice', tag: 'devices' },
  'GET /v1/devices/:id/history': { id: 'getDeviceHistory', tag: 'devices' },
  'GET /v1/device-events': { id: 'listDeviceEvents', tag: 'devices' },
  'POST /v1/devices/:id/revoke': { id: 'revokeDevice', tag: 'devices' },
  'GET /v1/devices/:id/desired': { id: 'getDesiredState', tag: 'devices' },
  'PUT /v1/devices/:id/desired/:model': { id: 'assignModel', tag: 'devices' },
  'DELETE /v1/devices/:id/desired/:model': { id: 'unassignModel', tag: 'devices' },
  'POST /v1/enroll': { id: 'enroll', tag: 'devices', access: 'public' },
  'GET /v1/keyset': { id: 'getKeySet', tag: 'devices', access: 'public' },
  'POST /v1/rollouts': { id: 'createRollout', tag: 'rollouts' },
  'GET /v1/rollouts': { id: 'listRollouts', tag: 'rollouts' },
  'GET /v1/rollouts/:id': { id: 'getRollout', tag: 'rollouts' },
  'GET /v1/rollouts/:id/members': { id: 'listRolloutMembers', tag: 'rollouts' },
  'POST /v1/rollouts/:id/pause': { id: 'pauseRollout', tag: 'rollouts' },
  'POST /v1/rollouts/:id/resume': { id: 'resumeRollout', tag: 'rollouts' },
  'POST /v1/rollouts/:id/abort': { id: 'abortRollout', tag: 'rollouts' },
  'POST /v1/rollouts/:id/promote': { id: 'promoteRollout', tag: 'rollouts' },
  'POST /v1/rollouts/:id/rollback': { id: 'rollbackRollout', tag: 'rollouts' },
  'GET /v1/artifacts/:sha256': { id: 'getArtifact', tag: 'artifacts', access: 'device' },
  'GET /v1/events': { id: 'streamEvents', tag: 'events' },
  'POST /v1/models/:name/versions/:version/evaluations': { id: 'evaluateVersion', tag: 'quality' },
  'GET /v1/models/:name/versions/:version/evaluations': { id: 'listEvaluations', tag: 'quality' },
  'GET /v1/evaluations/:id': { id: 'getEvaluation', tag: 'quality' },
  'GET /v1/models/:name/versions/:version/verdict': { id: 'getVerdict', tag: 'quality' },
  'GET /v1/models/:name/policy': { id: 'getPolicy', tag: 'quality' },
  'PUT /v1/models/:name/policy': { id: 'putPolicy', tag: 'quality' },
  'DELETE /v1/models/:name/policy': { id: 'deletePolicy', tag: 'quality' },
  'POST /v1/models/:name/versions/:version/reference': { id: 'createReferenceFromTelemetry', tag: 'telemetry' },
  'PUT /v1/models/:name/versions/:version/reference': { id: 'putReferenceDataset', tag: 'telemetry' },
  'GET /v1/models/:name/versions/:version/reference': { id: 'getReference', tag: 'telemetry' },
  'GET /v1/telemetry/windows': { id: 'listTelemetryWindows', tag: 'telemetry' },
  'GET /v1/drift': { id: 'getDrift', tag: 'drift' },
  'GET /v1/drift/scores': { id: 'listDriftScores', tag: 'drift' },
  'GET /v1/drift/alerts': { id: 'listDriftAlerts', tag: 'drift' },
  'POST /v1/drift/evaluate': { id: 'evaluateDrift', tag: 'drift' },
  'GET /v1/models/:name/versions/:version/drift': { id: 'getDriftStatus', tag: 'drift' },
  'GET /v1/models/:name/versions/:version/distribution': { id: 'getFeatureDistribution', tag: 'drift' },
  'POST /v1/broker/authenticate': { id: 'brokerAuthenticate', tag: 'broker', access: 'broker' },
  'POST /v1/broker/authorize': { id: 'brokerAuthorize', tag: 'broker', access: 'broker' },
};

const SECURITY: Record<Access, readonly Record<string, string[]>[]> = {
  token: [{ bearer: [] }],
  public: [],
  device: [{ bearer: [] }, { device: [] }],
  broker: [{ brokerHook: [] }],
};

/** Routes outside the API (the OpenAPI viewer itself) are left as they are. */
function isApiRoute(url: string): boolean {
  return url.startsWith('/v1/') || url === '/healthz' || url === '/readyz' || url === '/metrics';
}

/**
 * The onRoute hook: gives each API route its operationId, tag, security and problem responses,
 * and refuses (at start-up) a route the table does not know or that documents no response.
 */
export function describeRoute(route: RouteOptions): void {
  if (!isApiRoute(route.url)) return;
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  // fastify adds a HEAD route for each GET: documented by its GET.
  const method = methods.find((m) => m !== 'HEAD');
  if (!method) return;
  const key = `${method} ${route.url}`;
  const operation = OPERATIONS[key];
  if (!operation) throw new Error(`${key} has no operationId: add it to OPERATIONS in http/openapi.ts`);
  route.schema ??= {};
  const schema = route.schema as Record<string, unknown> & { response?: Record<string, unknown> };
  if (!schema.response || !Object.keys(schema.response).some((code) => /^[23]/.test(code))) {
    throw new Error(`${key} documents no response: give it schema.response (its 2xx answers)`);
  }
  schema.operationId = operation.id;
  schema.tags = [operation.tag];
  schema.security = SECURITY[operation.access ?? 'token'];
  schema.response = { ...schema.response, '4XX': ProblemResponse, '5XX': ProblemResponse };
}
