/**
 * For tests: checks every JSON answer against the response schema its route documents, and turns
 * a mismatch into a 500 that names it. Every test that calls the API is then also a test of the
 * OpenAPI contract (a field added to an answer but not to its schema fails the suite).
 */
import { Ajv } from 'ajv';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sharedSchemas } from './schemas.ts';

type Validate = ((data: unknown) => boolean) & { errors?: unknown[] | null };

export function registerResponseCheck(app: FastifyInstance): void {
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  for (const schema of sharedSchemas()) ajv.addSchema(schema);
  const compiled = new WeakMap<object, Validate>();

  function schemaFor(request: FastifyRequest, status: number): object | undefined {
    const responses = (request.routeOptions.schema as { response?: Record<string, unknown> } | undefined)?.response;
    if (!responses) return undefined;
    const entry = (responses[String(status)] ?? responses[`${String(status)[0]}XX`]) as
      | { content?: Record<string, { schema: object }> }
      | undefined;
    if (!entry) return undefined;
    if (entry.content) return entry.content['application/json']?.schema ?? entry.content['application/problem+json']?.schema;
    return entry;
  }

  app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const type = String(reply.getHeader('content-type') ?? '');
    if (typeof payload !== 'string' || !/json/.test(type) || !request.routeOptions.url?.startsWith('/v1/')) return payload;
    const schema = schemaFor(request, reply.statusCode);
    const problem = (detail: string) => {
      reply.code(500).type('application/problem+json');
      return JSON.stringify({
        type: 'urn:edgefleet:error:EF_INTERNAL_ERROR',
        title: 'response check',
        status: 500,
        code: 'EF_INTERNAL_ERROR',
        detail,
      });
    };
    const route = `${request.method} ${request.routeOptions.url} ${reply.statusCode}`;
    if (!schema) return problem(`${route}: the answer has no documented response schema`);
    let validate = compiled.get(schema);
    if (!validate) {
      validate = ajv.compile(schema) as Validate;
      compiled.set(schema, validate);
    }
    if (!validate(JSON.parse(payload))) {
      return problem(
        `${route}: the answer does not match its schema: ${JSON.stringify(validate.errors).slice(0, 2000)} in ${payload.slice(0, 500)}`,
      );
    }
    return payload;
  });
}
