/**
 * Artifact garbage collection: stored artifacts that no model record points at (failed installs,
 * crashes, replaced versions) are deleted, except those an install in progress has pinned (stored
 * but not yet referenced by the record it is about to write).
 */
import type { ModelStore } from './types.ts';

export interface ArtifactCollector {
  /** Spares these artifacts from collection until `unpin` (counted: pins nest). */
  pin(shas: readonly string[]): void;
  unpin(shas: readonly string[]): void;
  /** Queues a collection (one at a time); a failure goes to `onError`, never thrown. */
  collectLater(): Promise<void>;
  /** Settles when the queued collections have. */
  idle(): Promise<void>;
}

export function createArtifactCollector(store: ModelStore, onError: (error: unknown) => void): ArtifactCollector {
  const pinned = new Map<string, number>();
  let queue: Promise<void> = Promise.resolve();

  async function collect(): Promise<void> {
    const referenced = new Set<string>(pinned.keys());
    for (const record of await store.readRecords()) {
      for (const version of [record.active, record.previous, record.shadow?.version]) {
        if (!version) continue;
        referenced.add(version.sha256);
        for (const sha of Object.values(version.files)) referenced.add(sha);
      }
    }
    for (const sha of await store.listArtifacts()) {
      // Pinned again while the list was read: an install stored it meanwhile.
      if (!referenced.has(sha) && !pinned.has(sha)) await store.deleteArtifact(sha);
    }
  }

  return {
    pin(shas) {
      for (const sha of shas) pinned.set(sha, (pinned.get(sha) ?? 0) + 1);
    },
    unpin(shas) {
      for (const sha of shas) {
        const count = (pinned.get(sha) ?? 1) - 1;
        if (count > 0) pinned.set(sha, count);
        else pinned.delete(sha);
      }
    },
    collectLater() {
      queue = queue.then(collect).catch((error: unknown) => {
        onError(error);
      });
      return queue;
    },
    idle: () => queue,
  };
}
