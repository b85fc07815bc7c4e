// The model check's worker thread (see model-check.ts): loads uploaded models in onnxruntime-web
// (WASM) and runs their sample inputs, one job at a time. Plain JavaScript, so that it runs in a
// worker without a TypeScript loader. A model that hangs or crashes onnxruntime takes this thread
// with it, never the server's event loop.
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-web';

// One thread: the check must not compete with the server for the machine's cores.
ort.env.wasm.numThreads = 1;

parentPort.on('message', async ({ id, model, samples }) => {
  let session;
  try {
    session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
  } catch (error) {
    parentPort.postMessage({ id, ok: false, stage: 'load', message: String(error?.message ?? error) });
    return;
  }
  try {
    const results = [];
    for (const [index, feeds] of samples.entries()) {
      const tensors = Object.fromEntries(feeds.map((feed) => [feed.name, new ort.Tensor(feed.dtype, feed.data, feed.shape)]));
      let outputs;
      try {
        outputs = await session.run(tensors);
      } catch (error) {
        parentPort.postMessage({ id, ok: false, stage: 'run', index, message: String(error?.message ?? error) });
        return;
      }
      results.push(
        Object.entries(outputs).map(([name, tensor]) => ({ name, type: tensor.type, dims: [...tensor.dims], data: tensor.data })),
      );
    }
    parentPort.postMessage({ id, ok: true, inputs: [...session.inputNames], outputs: [...session.outputNames], results });
  } finally {
    await session.release();
  }
});
