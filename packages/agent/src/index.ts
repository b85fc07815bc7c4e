export { type Agent, type AgentOptions, type AgentStateStore, createAgent } from './agent.ts';
export { createMemoryAgentState, createMemoryTelemetryQueue } from './memory.ts';
export { errorInfo, type Plan, type PlannedInstall, planReconcile, type ReportInput, reportedState } from './reconcile.ts';
export { type QueuedWindow, queueKey, TELEMETRY_QUEUE_DEFAULTS, type TelemetryQueueStore, telemetryMessage } from './telemetry.ts';
export {
  createMqttTransport,
  type MqttTransportOptions,
  reconnectDelay,
  type Transport,
  type TransportEvents,
} from './transport.ts';
