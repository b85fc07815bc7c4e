/**
 * Questions about versions that several parts of the server ask: find one, and what still needs it.
 */
import { type DesiredStatePayload, EdgefleetError, isSemver, type ReportedState, type SignedDocument } from '@edgefleet/protocol';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/schema.ts';

/** The version as written, or EF_VERSION_INVALID. */
export function versionOf(text: string): string {
  if (!isSemver(text)) throw new EdgefleetError('EF_VERSION_INVALID', `"${text.slice(0, 64)}" is not a semantic version`);
  return text;
}

/** A version's row; EF_NOT_FOUND when the registry has no such version. */
export async function findVersion(db: Kysely<Database>, name: string, version: string) {
  const row = await db.selectFrom('model_versions').selectAll().where('name', '=', name).where('version', '=', version).executeTakeFirst();
  if (!row) throw new EdgefleetError('EF_NOT_FOUND', `${name}@${version} is not in the registry`);
  return row;
}

/** How many ids a refusal names before "and N more". */
const NAMED = 5;

function named(ids: readonly string[]): string {
  return `${ids.slice(0, NAMED).join(', ')}${ids.length > NAMED ? ` and ${ids.length - NAMED} more` : ''}`;
}

/**
 * What still needs a version, in words: rollouts that install it or would roll back to it, and
 * devices whose desired state names it or that report running it (active or as the version they
 * would roll back to). Deleting any of these would leave a rollout unable to finish or a device
 * unable to get back what it runs (THREATS 23).
 */
export async function versionUsers(trx: Transaction<Database>, name: string, version: string): Promise<string[]> {
  const users: string[] = [];
  const live = ['running', 'paused', 'rolling_back'] as const;
  const installing = await trx
    .selectFrom('rollouts')
    .select('id')
    .where('model', '=', name)
    .where('version', '=', version)
    .where('state', 'in', live)
    .execute();
  if (installing.length > 0) users.push(`rollout ${named(installing.map((r) => r.id))} installs it`);
  const returning = await trx
    .selectFrom('rollout_devices')
    .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
    .select('rollouts.id')
    .distinct()
    .where('rollouts.model', '=', name)
    .where('rollouts.state', 'in', live)
    .where('rollout_devices.previous_version', '=', version)
    .execute();
  if (returning.length > 0) users.push(`rollout ${named(returning.map((r) => r.id))} would roll devices back to it`);
  // Documents and reports are JSON: a text match narrows the rows, parsing decides. A semantic
  // version has no LIKE wildcard (% or _) in it.
  const mention = `%"version":"${version}"%`;
  const desired = await trx.selectFrom('device_desired').select(['device_id', 'document']).where('document', 'like', mention).execute();
  const meant = desired
    .filter((r) =>
      (JSON.parse(r.document) as SignedDocument<DesiredStatePayload>).payload.models.some(
        (m) => m.manifest.payload.name === name && m.manifest.payload.version === version,
      ),
    )
    .map((r) => r.device_id);
  if (meant.length > 0) users.push(`the desired state of device ${named(meant)} names it`);
  const reported = await trx.selectFrom('devices').select(['id', 'reported']).where('reported', 'like', mention).execute();
  const running = reported
    .filter((r) =>
      (JSON.parse(r.reported ?? '{"models":[]}') as ReportedState).models.some(
        (m) => m.name === name && (m.active?.version === version || m.previous?.version === version),
      ),
    )
    .map((r) => r.id);
  if (running.length > 0) users.push(`device ${named(running)} reports running it or keeping it to roll back to`);
  return users;
}

/** An alias name: lower case, as `PUT /v1/models/{name}/aliases/{alias}` takes it. */
export const ALIAS_PATTERN = '^[a-z][a-z0-9-]{0,31}$';

/**
 * A version given as a semantic version or as an alias (`production`), resolved to the version it
 * names now: EF_NOT_FOUND when neither exists. Callers record the resolved version, never the
 * alias, so moving the alias later changes nothing that was decided with it.
 */
export async function resolveVersion(
  db: Kysely<Database>,
  name: string,
  versionOrAlias: string,
): Promise<{ version: string; alias: string | null }> {
  if (isSemver(versionOrAlias)) {
    await findVersion(db, name, versionOrAlias);
    return { version: versionOrAlias, alias: null };
  }
  if (!new RegExp(ALIAS_PATTERN).test(versionOrAlias)) {
    throw new EdgefleetError(
      'EF_VERSION_INVALID',
      `"${versionOrAlias.slice(0, 64)}" is neither a semantic version nor an alias name (lower case letters, digits and dashes)`,
    );
  }
  const row = await db
    .selectFrom('aliases')
    .select('version')
    .where('name', '=', name)
    .where('alias', '=', versionOrAlias)
    .executeTakeFirst();
  if (!row) {
    throw new EdgefleetError(
      'EF_NOT_FOUND',
      `${name} has no version or alias "${versionOrAlias}"; GET /v1/models/${name}/aliases lists its aliases`,
    );
  }
  return { version: row.version, alias: versionOrAlias };
}
