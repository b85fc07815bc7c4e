/**
 * Waits for an observable condition, polling, and fails naming what it waited for once `timeoutMs`
 * has passed: how tests wait (never a fixed sleep followed by an assertion).
 */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
