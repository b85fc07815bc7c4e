/**
 * What a first visit to the dashboard downloads: the scripts and stylesheets index.html loads
 * (entry, module preloads), from the build the fleet server serves, gzipped at level 9 as the
 * server sends them.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

/** The first load's JavaScript, gzipped: at most this. */
export const DASHBOARD_BUDGET = 200 * 1024;

export async function dashboardFirstLoad(): Promise<{ jsMin: number; jsGzip: number; cssGzip: number; files: string[] }> {
  const dir = fileURLToPath(new URL('../apps/fleet-server/dashboard/', import.meta.url));
  if (!existsSync(join(dir, 'index.html'))) throw new Error(`no dashboard build in ${dir}: run pnpm build first`);
  const html = await readFile(join(dir, 'index.html'), 'utf8');
  const refs = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*\shref)="(\/[^"]+\.(?:js|css))"/g)].map((m) => m[1] as string);
  let jsMin = 0;
  let jsGzip = 0;
  let cssGzip = 0;
  for (const ref of refs) {
    const bytes = await readFile(join(dir, ref));
    const gz = gzipSync(bytes, { level: 9 }).length;
    if (ref.endsWith('.js')) {
      jsMin += bytes.length;
      jsGzip += gz;
    } else cssGzip += gz;
  }
  if (refs.filter((r) => r.endsWith('.js')).length === 0) throw new Error('index.html loads no script: is this the dashboard build?');
  return { jsMin, jsGzip, cssGzip, files: refs };
}
