/**
 * The browser side of the contract suites: real IndexedDB stores and onnxruntime-web engines
 * (WASM, WebGPU on SwiftShader) in Chromium, driven from Node through a small RPC (see
 * test/helpers/remote.ts). Objects with methods stay in the page behind a handle; data crosses as
 * JSON, typed arrays tagged, errors with their code.
 */
import { createIndexedDbAgentState, createIndexedDbTelemetryQueue } from '@edgefleet/agent/browser';
import { createBrowserEngine, createIndexedDbModelStore } from '@edgefleet/runtime/browser';
import { createStore, set } from 'idb-keyval';
import { decodeWire, encodeWire } from '../helpers/wire-codec.ts';

const objects = new Map<number, Record<string, unknown>>();
let nextHandle = 1;

/** An object with methods stays here behind a handle; its data properties travel with it. */
const encode = (value: unknown): unknown =>
  encodeWire(value, (object) => {
    const entries = Object.entries(object as Record<string, unknown>);
    if (!entries.some(([, v]) => typeof v === 'function')) return undefined;
    const handle = nextHandle++;
    objects.set(handle, object as Record<string, unknown>);
    return {
      $handle: handle,
      props: Object.fromEntries(entries.filter(([, v]) => typeof v !== 'function').map(([k, v]) => [k, encode(v)])),
    };
  });

const factories = {
  modelStore: (name: string) => createIndexedDbModelStore({ name }),
  engine: (webgpu: boolean) => createBrowserEngine({ webgpu }),
  agentState: (database: string) => createIndexedDbAgentState(database),
  telemetryQueue: (database: string, limit: number) => createIndexedDbTelemetryQueue(database, { limit }),
  corruptAgentState: (database: string) => set('lastSequence', { not: 'a number' }, createStore(database, 'state')),
  corruptTelemetryEntry: (database: string, key: string) => set(key, 'not a window', createStore(database, 'windows')),
};
objects.set(0, factories);

export async function call(handle: number, method: string, args: unknown[]): Promise<unknown> {
  try {
    const target = objects.get(handle);
    const fn = target?.[method];
    if (typeof fn !== 'function') throw new Error(`no method ${method} on handle ${handle}`);
    return {
      value: encode(
        await (fn as (...a: unknown[]) => unknown).apply(
          target,
          args.map((a) => decodeWire(a)),
        ),
      ),
    };
  } catch (error) {
    const { code, message } = error as { code?: string; message?: string };
    return { error: { code, message: message ?? String(error) } };
  }
}
