import { EdgefleetError } from '@edgefleet/protocol';

/** A date from a query or body field, as ISO 8601 UTC; EF_SCHEMA_INVALID naming the field when it is not one. */
export function iso(value: string, field: string): string {
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new EdgefleetError('EF_SCHEMA_INVALID', `${field} "${value}" is not a date`);
  return new Date(at).toISOString();
}
