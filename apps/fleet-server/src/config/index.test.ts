import { describe, expect, it } from 'vitest';
import { helpText, loadConfig } from './index.ts';

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
});
