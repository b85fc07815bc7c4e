// The evaluation's worker thread (see runner.ts): holds one onnxruntime-web (WASM) session for the
// evaluation under way and runs batches of samples on it. Plain JavaScript, so that it runs in a
// worker without a TypeScript loader. A model that hangs or crashes onnxruntime takes this thread
// with it, never the server's event loop.
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-web';

// One thread: evaluation must not compete with the server for the machine's cores.
ort.env.wasm.numThreads = 1;

let session;

parentPort.on('message', async (message) => {
  const { id } = message;
  try {
    if (message.type === 'open') {
      await session?.release();
      session = await ort.InferenceSession.create(message.model, { executionProviders: ['wasm'] });
      parentPort.postMessage({ id, ok: true, inputs: [...session.inputNames], outputs: [...session.outputNames] });
    } else if (message.type === 'run') {
      // Several runs per message (one per sample when the model takes no batch): one round trip.
      const results = [];
      for (const feeds of message.runs) {
        const tensors = Object.fromEntries(feeds.map((feed) => [feed.name, new ort.Tensor(feed.dtype, feed.data, feed.shape)]));
        const outputs = await session.run(tensors);
        results.push(
          Object.entries(outputs).map(([name, tensor]) => ({ name, type: tensor.type, dims: [...tensor.dims], data: tensor.data })),
        );
      }
      parentPort.postMessage({ id, ok: true, results });
    } else if (message.type === 'close') {
      await session?.release();
      session = undefined;
      parentPort.postMessage({ id, ok: true });
    }
  } catch (error) {
    parentPort.postMessage({ id, ok: false, message: String(error?.message ?? error) });
  }
});
