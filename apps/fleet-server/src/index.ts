export type { FleetBroker } from './broker/index.ts';
export { helpText, loadConfig, SETTINGS, type ServerConfig } from './config/index.ts';
export type { DriftEvaluator } from './drift/evaluator.ts';
export { signWebhook, verifyWebhookSignature } from './drift/webhook.ts';
export { type OnnxSummary, readOnnxSummary } from './registry/onnx.ts';
export { type CreateServerOptions, createFleetServer, type FleetServer } from './server.ts';
