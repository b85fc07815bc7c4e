/**
 * Node's side of the RPC into a Chromium page (test/browser/contracts-page.ts): a remote object is
 * a proxy whose properties are those the page sent and whose methods call into the page, so a
 * contract suite written for in-process objects runs unchanged against objects living in the
 * browser. Typed arrays cross tagged; an error comes back with its code.
 */
import type { Page } from 'playwright-core';
import { decodeWire, encodeWire } from './wire-codec.ts';

export type RemoteCall = (handle: number, method: string, args: unknown[]) => Promise<unknown>;

/** Calls into the page's `window.contracts.call`. */
export function pageCall(page: Page): RemoteCall {
  return async (handle, method, args) => {
    const answer = (await page.evaluate(([h, m, a]) => (window as unknown as { contracts: { call: RemoteCall } }).contracts.call(h, m, a), [
      handle,
      method,
      args.map((a) => encodeWire(a)),
    ] as const)) as { value?: unknown; error?: { code?: string; message: string } };
    if (answer.error) throw Object.assign(new Error(answer.error.message), answer.error.code ? { code: answer.error.code } : {});
    return decodeWith(answer.value, pageCall(page));
  };
}

function decodeWith(value: unknown, call: RemoteCall): unknown {
  return decodeWire(value, (object) => {
    if (object.$handle === undefined) return undefined;
    return remote(call, object.$handle as number, decodeWith(object.props ?? {}, call) as Record<string, unknown>);
  });
}

/** An object in the page: its data properties as sent, every other property a method calling into the page. */
export function remote<T>(call: RemoteCall, handle: number, props: Record<string, unknown> = {}): T {
  return new Proxy(props, {
    get(target, property) {
      if (typeof property !== 'string' || property === 'then') return undefined; // not a thenable
      if (property in target) return target[property];
      return (...args: unknown[]) => call(handle, property, args);
    },
  }) as T;
}
