export {
  goldenVector,
  type ManifestForOptions,
  manifestFor,
  PADDLE_OCR_DET_PATH,
  PADDLE_OCR_REC_PATH,
  readModel,
  SILERO_INPUTS,
  SILERO_LEGACY_INPUTS,
  SILERO_LEGACY_OUTPUTS,
  SILERO_OUTPUTS,
  SILERO_VAD_LEGACY_PATH,
  SILERO_VAD_V5_PATH,
  sha256Hex,
  sileroFrame,
  sileroSampleInput,
} from './fixtures/index.ts';
export { type ArtifactFaults, type ArtifactServer, createArtifactServer } from './http/index.ts';
export {
  type FixtureModel,
  heavyMlpModel,
  identityModel,
  int8LinearModel,
  MLP_INPUTS,
  MLP_OUTPUTS,
  mlpModel,
  quantizedMlpModel,
  seededValues,
  splitmix,
} from './models/index.ts';
export {
  buildOnnxModel,
  ONNX_DTYPES,
  type OnnxAttribute,
  type OnnxDtype,
  type OnnxInitializer,
  type OnnxModelSpec,
  type OnnxNode,
  type OnnxValueInfo,
} from './onnx/index.ts';
export { invalidFor, validFor } from './schema/index.ts';
export { until } from './wait.ts';
