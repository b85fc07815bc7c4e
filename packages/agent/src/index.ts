export { type Agent, type AgentOptions, type AgentStateStore, createAgent } from './agent.ts';
