import { describeEngineContract } from '@edgefleet/test-utils/contracts';
import { createNativeEngine, createWasmEngine } from '../node.ts';

describeEngineContract('onnxruntime-web (WASM) in Node', async () => ({ engine: createWasmEngine(), executionProvider: 'wasm' }));

describeEngineContract('onnxruntime-node (native CPU)', async () => {
  const engine = await createNativeEngine();
  if (!engine) throw new Error('onnxruntime-node is a dev dependency of @edgefleet/runtime and must load in tests');
  return { engine, executionProvider: 'cpu' };
});
