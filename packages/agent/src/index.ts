export { type Agent, type AgentOptions, type AgentStateStore, createAgent } from './agent.ts';
export { type QueuedWindow, queueKey, TELEMETRY_QUEUE_DEFAULTS, type TelemetryQueueStore, telemetryMessage } from './telemetry.ts';
