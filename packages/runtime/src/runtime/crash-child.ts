/**
 * Child process of crash.test.ts: installs a model and kills itself with SIGKILL at the step named
 * on the command line, the way a power cut or the OOM killer would end a device's process.
 */
import { readFileSync } from 'node:fs';
import type { ManifestPayload, SignedDocument } from '@edgefleet/protocol';
import { createRuntime, createWasmEngine } from '../node.ts';

interface CrashPlan {
  readonly dir: string;
  readonly keySet: unknown;
  readonly manifest: SignedDocument<ManifestPayload>;
  readonly modelPath: string;
  readonly crashAt: string;
}

const plan = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as CrashPlan;
const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
};

const runtime = await createRuntime({
  dir: plan.dir,
  engines: [createWasmEngine(1)],
  trust: plan.keySet as never,
  hooks: { onStep: (step) => (step === plan.crashAt ? die() : undefined) },
});
const bytes = new Uint8Array(readFileSync(plan.modelPath));
// Small chunks so that "during download" falls between two writes of the artifact.
const chunks = new ReadableStream<Uint8Array>({
  start(controller) {
    for (let i = 0; i < bytes.length; i += 64) controller.enqueue(bytes.slice(i, i + 64));
    controller.close();
  },
});
await runtime.install(plan.manifest, chunks, {
  onProgress: ({ bytes: received, total }) => {
    if (plan.crashAt === 'download' && received >= total / 2) die();
  },
});
process.stdout.write('installed\n');
await runtime.close();
