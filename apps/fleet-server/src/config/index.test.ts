import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { defaultDataDir, helpText, loadConfig, SETTINGS } from './index.ts';

const docs = readFileSync(fileURLToPath(new URL('../../../../docs/fleet-server.md', import.meta.url)), 'utf8');

describe('server configuration', () => {
  it('reads drift and webhook settings from the environment, with documented defaults', () => {
    const defaults = loadConfig({});
    expect(defaults).toMatchObject({ driftBucketSeconds: 300, driftEvaluateMs: 10_000, driftAlertWindows: 3, webhookUrl: undefined });
    const config = loadConfig({
      EDGEFLEET_DRIFT_BUCKET_SECONDS: '60',
      EDGEFLEET_DRIFT_ALERT_WINDOWS: '5',
      EDGEFLEET_WEBHOOK_URL: 'https://hooks.example/retrain',
      EDGEFLEET_WEBHOOK_SECRET: 'k',
    });
    expect(config).toMatchObject({ driftBucketSeconds: 60, driftAlertWindows: 5, webhookUrl: 'https://hooks.example/retrain' });
    expect(helpText()).toContain('EDGEFLEET_WEBHOOK_SECRET');
  });

  it('refuses a webhook without its secret, or one that is not http(s), saying what to set', () => {
    expect(() => loadConfig({ EDGEFLEET_WEBHOOK_URL: 'https://hooks.example/retrain' })).toThrow(/needs EDGEFLEET_WEBHOOK_SECRET/);
    expect(() => loadConfig({ EDGEFLEET_WEBHOOK_URL: 'file:///etc/passwd', EDGEFLEET_WEBHOOK_SECRET: 'k' })).toThrow(/must be http\(s\)/);
    expect(() => loadConfig({ EDGEFLEET_DRIFT_ALERT_WINDOWS: '0' })).toThrow(/EDGEFLEET_DRIFT_ALERT_WINDOWS must be an integer from 1/);
  });

  it('puts the data folder where the command was started (not where pnpm runs the script), or in the systemd state directory', () => {
    // `pnpm --filter @edgefleet/fleet-server start` runs in apps/fleet-server with INIT_CWD at the user's directory.
    expect(defaultDataDir({ INIT_CWD: '/home/op/fleet' }, '/repo/apps/fleet-server')).toBe(join('/home/op/fleet', '.edgefleet', 'server'));
    expect(defaultDataDir({}, '/srv/fleet')).toBe(join('/srv/fleet', '.edgefleet', 'server'));
    expect(defaultDataDir({ STATE_DIRECTORY: '/var/lib/edgefleet-server', INIT_CWD: '/x' }, '/')).toBe('/var/lib/edgefleet-server');
    expect(defaultDataDir({ STATE_DIRECTORY: '/var/lib/a:/var/lib/b' }, '/')).toBe('/var/lib/a');
    expect(loadConfig({ EDGEFLEET_DATA_DIR: '/data', STATE_DIRECTORY: '/var/lib/edgefleet-server' }).dataDir).toBe('/data');
  });

  it('--help says what docs/fleet-server.md says: every setting, the webhook signature, the data folder, the dashboard it serves', () => {
    const help = helpText('1.2.3');
    expect(help).toContain('edgefleet-server 1.2.3');
    for (const setting of SETTINGS) {
      expect(help).toContain(setting.env);
      expect(docs, `${setting.env} is documented`).toContain(`\`${setting.env}\``);
    }
    const signature = docs.match(/X-Edgefleet-Signature: (t=<unix seconds>,v1=)/)?.[1];
    expect(signature).toBeDefined();
    expect(help).toContain(`X-Edgefleet-Signature: ${signature}`);
    expect(help).toContain('./.edgefleet/server');
    expect(docs).toContain('./.edgefleet/server');
    expect(help).toContain('$STATE_DIRECTORY');
    // The dashboard it offers exists, and its page says how to use it.
    expect(docs).toContain('(dashboard.md)');
    expect(existsSync(new URL('../../../../docs/dashboard.md', import.meta.url))).toBe(true);
  });
});
