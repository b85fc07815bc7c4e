/**
 * Identifiers that end up in MQTT topics, URLs, file names and database keys. Keeping them to a
 * small alphabet here is what makes topic injection (`+`, `#`, `/`, empty levels) and path
 * traversal impossible downstream.
 */
import { EdgefleetError } from '../errors/index.ts';

/** Device ids: also the MQTT client id and one topic level. */
export const DEVICE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$';
/** Model names: one URL path segment and one file-name component. */
export const MODEL_NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,63}$';

const DEVICE_ID = new RegExp(DEVICE_ID_PATTERN);
const MODEL_NAME = new RegExp(MODEL_NAME_PATTERN);

// Names that collide with Object.prototype members ("constructor", "toString"...). A map keyed by
// them in any downstream code would read the prototype instead of data; refusing them here is
// cheaper than auditing every lookup.
const PROTOTYPE_NAMES = new Set(Object.getOwnPropertyNames(Object.prototype).map((n) => n.toLowerCase()));

export function isDeviceId(value: unknown): value is string {
  return typeof value === 'string' && DEVICE_ID.test(value) && !PROTOTYPE_NAMES.has(value.toLowerCase());
}

export function assertDeviceId(value: unknown): string {
  if (!isDeviceId(value)) {
    throw new EdgefleetError('EF_DEVICE_ID_INVALID', `${describe(value)} is not a valid device id`, { details: { deviceId: value } });
  }
  return value;
}

export function isModelName(value: unknown): value is string {
  return typeof value === 'string' && MODEL_NAME.test(value) && !PROTOTYPE_NAMES.has(value);
}

export function assertModelName(value: unknown): string {
  if (!isModelName(value)) {
    throw new EdgefleetError('EF_MODEL_NAME_INVALID', `${describe(value)} is not a valid model name`, { details: { name: value } });
  }
  return value;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : `a ${value === null ? 'null' : typeof value}`;
}
