/**
 * Real headless Chromium (Debian's package) driven by playwright-core. Never downloads a browser:
 * `scripts/ensure-system-deps.sh` installs /usr/bin/chromium, and a missing one fails loudly.
 */
import { existsSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.EDGEFLEET_CHROMIUM ?? '/usr/bin/chromium';

/** Flags that keep Chromium off the network it cannot reach here and make it start cleanly as root. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: run scripts/ensure-system-deps.sh (apt-get install chromium) or set EDGEFLEET_CHROMIUM`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

/** A browser with a profile on disk that survives a relaunch (IndexedDB, caches). */
export async function launchPersistentChromium(userDataDir: string, extraArgs: string[] = []): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: run scripts/ensure-system-deps.sh (apt-get install chromium) or set EDGEFLEET_CHROMIUM`,
    );
  }
  return chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, ...extraArgs] });
}
