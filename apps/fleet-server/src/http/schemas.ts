/**
 * Response schemas shared by the routes, and the protocol's documents as named OpenAPI
 * components (SignedManifest, SignedDesiredState, SignedKeySet, ReportedState), referenced by
 * `$ref` rather than repeated in every operation that returns one.
 *
 * Response schemas document the API (the OpenAPI document, and the typed client generated from
 * it): answers are serialized with JSON.stringify, never filtered by them. Tests run the server
 * with `validateResponses`, which checks every JSON answer against its route's schema, so the
 * contract and the answers cannot drift apart.
 */
import { ReportedState, SignedDesiredState, SignedKeySet, SignedManifest } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import Type, { type TSchema } from 'typebox';

export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const DateTime = Type.String({ format: 'date-time' });
export const Next = Nullable(Type.String({ description: 'the cursor of the next page (pass it as ?cursor=); null on the last page' }));

/** A page of `items` under `key`, with the next cursor. */
export function Page<K extends string, T extends TSchema>(key: K, item: T, extra: Record<string, TSchema> = {}) {
  return Type.Object({ ...extra, [key]: Type.Array(item), next: Next } as Record<K | 'next', TSchema>, { additionalProperties: false });
}

/** RFC 9457 problem details with the edgefleet code; extension members may follow. */
export const Problem = Type.Object(
  {
    type: Type.String({ description: 'urn:edgefleet:error:<code>' }),
    title: Type.String(),
    status: Type.Integer({ minimum: 400, maximum: 599 }),
    detail: Type.String({ description: 'what happened, and what to do' }),
    code: Type.String({ pattern: '^EF_[A-Z0-9_]+$', description: 'the stable edgefleet error code (docs/errors.md)' }),
    instance: Type.String({ description: 'urn:uuid:<request id>, the id in the server log' }),
    errors: Type.Optional(Type.Array(Type.Unknown(), { description: 'schema errors, when the request failed validation' })),
    details: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description:
          'specifics for programs, on some codes: EF_POLICY_FAILED (failures: metric, kind, value, threshold), EF_EVALUATION_PENDING (evaluation), EF_DATASET_INVALID (row)',
      }),
    ),
  },
  { additionalProperties: true, $id: 'Problem', title: 'problem' },
);

const SHARED = { SignedManifest, SignedDesiredState, SignedKeySet, ReportedState } as const;
export type SharedSchema = keyof typeof SHARED | 'Problem';

/** A reference to a shared schema (an OpenAPI component). */
export const Ref = (name: SharedSchema) => Type.Ref(name);

export function registerSharedSchemas(app: FastifyInstance): void {
  for (const [name, schema] of Object.entries(SHARED)) app.addSchema({ ...schema, $id: name });
  app.addSchema(Problem);
}

/** The shared schemas with their ids, for a validator outside fastify. */
export function sharedSchemas(): object[] {
  return [...Object.entries(SHARED).map(([name, schema]) => ({ ...schema, $id: name })), Problem];
}

/** A response described by its media type (for answers that are not JSON). */
export function mediaResponse(mediaType: string, description: string, schema: TSchema = Type.String()) {
  return { description, content: { [mediaType]: { schema } } };
}

export const ProblemResponse = {
  description: 'a problem (RFC 9457): `code` says what went wrong, `detail` what to do',
  content: { 'application/problem+json': { schema: Ref('Problem') } },
};

export const Empty = Type.Null({ description: 'no body' });
