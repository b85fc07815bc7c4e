/**
 * Browser tests serve their pages, bundles and models with the one fixture server
 * (@edgefleet/test-utils' createArtifactServer): in-memory files with their content types, and
 * folders from disk (onnxruntime-web's dist/), cross-origin isolated.
 */
import { type ArtifactServer, createArtifactServer } from '@edgefleet/test-utils';

export interface StaticFile {
  readonly body: string | Uint8Array;
  readonly type: string;
}

export type StaticServer = ArtifactServer;

export async function serveFiles(
  files: Readonly<Record<string, StaticFile>>,
  folders: Readonly<Record<string, string>> = {},
): Promise<StaticServer> {
  const server = await createArtifactServer({ folders });
  for (const [path, file] of Object.entries(files)) server.set(path, file.body, { type: file.type });
  return server;
}
