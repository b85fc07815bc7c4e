/**
 * When is a device failing a model? When it reports the model failed (nothing serves), or when its
 * last install failed and it does not run the version it is meant to (a refused update leaves the
 * old version serving: the device works, but it is stuck). An error left over from an attempt the
 * fleet has since moved away from (a rollback to what the device runs) is not a failure.
 */
import type { DesiredStatePayload, ReportedState, SignedDocument } from '@edgefleet/protocol';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/schema.ts';

type ReportedModel = ReportedState['models'][number];

export function isFailing(model: ReportedModel, desiredVersion: string | undefined): boolean {
  if (model.state === 'failed') return true;
  return model.lastError !== undefined && desiredVersion !== undefined && model.active?.version !== desiredVersion;
}

/** The version each model of a stored desired-state document names. */
export function desiredVersions(document: string | undefined): Map<string, string> {
  if (!document) return new Map();
  const payload = (JSON.parse(document) as SignedDocument<DesiredStatePayload>).payload;
  return new Map(payload.models.map((m) => [m.manifest.payload.name, m.manifest.payload.version]));
}

/** 1 when any model of `reported` is failing against the device's stored desired state. */
export async function failingFlag(
  db: Kysely<Database> | Transaction<Database>,
  deviceId: string,
  reported: ReportedState,
): Promise<number> {
  if (!reported.models.some((m) => m.state === 'failed' || m.lastError !== undefined)) return 0;
  const row = await db.selectFrom('device_desired').select('document').where('device_id', '=', deviceId).executeTakeFirst();
  const desired = desiredVersions(row?.document);
  return reported.models.some((m) => isFailing(m, desired.get(m.name))) ? 1 : 0;
}
