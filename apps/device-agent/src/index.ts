export { type Credential, type DaemonOptions, loadOrEnroll, runDaemon } from './daemon/index.ts';
export {
  type EnrolledDevices,
  enrollDevices,
  type SimulatedDevice,
  type Simulation,
  type SimulationFaults,
  type SimulationOptions,
  startSimulation,
} from './simulate/index.ts';
