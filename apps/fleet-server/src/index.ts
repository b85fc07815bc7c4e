export type { FleetBroker } from './broker/index.ts';
export { helpText, loadConfig, SETTINGS, type ServerConfig } from './config/index.ts';
export { type OnnxSummary, readOnnxSummary } from './registry/onnx.ts';
export { type CreateServerOptions, createFleetServer, type FleetServer } from './server.ts';
export { FAMILY_P_VALUE, mergeWindows, scoreBucket } from './telemetry/drift.ts';
export { ALL_DEVICES, type DriftEvaluator } from './telemetry/evaluator.ts';
export { signWebhook, verifyWebhookSignature } from './telemetry/webhook.ts';
