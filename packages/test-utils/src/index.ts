export { type FixtureModel, identityModel, int8LinearModel, mlpModel, seededValues } from './models/index.ts';
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
