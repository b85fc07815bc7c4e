export { type Credential, type DaemonOptions, loadOrEnroll, runDaemon } from './daemon/index.ts';
export {
  type EnrolledDevices,
  enrollDevices,
  type SimulatedDevice,
  type SimulatedTelemetry,
  type Simulation,
  type SimulationFaults,
  type SimulationOptions,
  simulatedWindow,
  startSimulation,
} from './simulate/index.ts';
