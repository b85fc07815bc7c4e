/**
 * One contract suite per seam, run against every implementation of it (see docs/ARCHITECTURE.md):
 * vitest suites, imported from `@edgefleet/test-utils/contracts` by each implementation's tests.
 * Each is typed by what it exercises: this package cannot depend on the packages whose tests use it.
 */
export {
  type AgentStateHarness,
  type AgentStateStorage,
  type AgentStateUnderTest,
  describeAgentStateContract,
  describeTelemetryQueueContract,
  type TelemetryQueueHarness,
  type TelemetryQueueStorage,
  type TelemetryQueueUnderTest,
} from './agent-stores.ts';
export {
  type ArtifactStoreHarness,
  type ArtifactStoreUnderTest,
  describeArtifactStoreContract,
  type StagedArtifact,
} from './artifact-store.ts';
export { type ClockSubject, createManualClock, describeClockContract, type ManualClock } from './clock.ts';
export { describeEngineContract, type EngineHarness, type EngineUnderTest, SILERO_REFERENCE } from './engine.ts';
export { describeModelStoreContract, type ModelStoreUnderTest, type StoreHarness } from './model-store.ts';
export { describeServerDatabaseContract, type OpenedDatabaseUnderTest, type ServerDatabaseHarness } from './server-database.ts';
export { type BrokerDevice, describeTransportContract, type TransportHarness, type TransportUnderTest } from './transport.ts';
