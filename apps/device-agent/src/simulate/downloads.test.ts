/**
 * The simulator's downloader behaves as the runtime's does when the link fails: a connection cut
 * mid-body (a server replica killed behind its load balancer) is resumed with Range, and only a
 * link that keeps failing ends the install, with a download error code (never EF_INTERNAL_ERROR).
 */
import { createHash } from 'node:crypto';
import { type ArtifactServer, createArtifactServer, seededValues, until } from '@edgefleet/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { createDownloader } from './downloads.ts';

let server: ArtifactServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const body = Buffer.from(new Float32Array(seededValues(50_000, 3)).buffer);
const sha256 = createHash('sha256').update(body).digest('hex');

describe('simulated downloads', () => {
  it('resumes with Range after connections cut mid-body, and gets the bytes right', async () => {
    server = await createArtifactServer();
    server.set('/model.onnx', body, { cutAfterBytes: 30_000, cutTimes: 2 });
    const downloader = createDownloader({ https: false, concurrency: 4 });
    const bytes = await downloader.download({ url: `${server.url}/model.onnx`, sha256, size: body.length, keep: true });
    downloader.close();
    expect(Buffer.from(bytes as Uint8Array).equals(body)).toBe(true);
    expect(server.requests.filter((r) => r.path === '/model.onnx').map((r) => r.range ?? 'whole')).toEqual([
      'whole',
      'bytes=30000-',
      'bytes=60000-',
    ]);
  });

  it('rides out a server coming back (503 nine times), and holds no slot while it waits between attempts', async () => {
    server = await createArtifactServer();
    server.set('/restarting.onnx', body, { failStatus: 503, failTimes: 9 });
    server.set('/other.onnx', body);
    // One slot: the device waiting for the restarting server must not keep the other one waiting.
    const downloader = createDownloader({ https: false, concurrency: 1, maxPauseMs: 50 });
    const order: string[] = [];
    const restarting = downloader
      .download({ url: `${server.url}/restarting.onnx`, sha256, size: body.length, keep: true })
      .then((bytes) => {
        order.push('restarting');
        return bytes;
      });
    // Started once the first 503 has been answered: the first device is backing off by then.
    await until(
      () => server?.requests.some((r) => r.path === '/restarting.onnx') ?? false,
      'the first attempt at the restarting server',
      30_000,
      5,
    );
    await downloader.download({ url: `${server.url}/other.onnx`, sha256, size: body.length }).then(() => order.push('other'));
    const bytes = await restarting;
    downloader.close();
    expect(Buffer.from(bytes as Uint8Array).equals(body)).toBe(true);
    expect(server.requests.filter((r) => r.path === '/restarting.onnx')).toHaveLength(10);
    expect(order).toEqual(['other', 'restarting']);
  });

  it('ends with EF_DOWNLOAD_FAILED when nothing answers any more', async () => {
    server = await createArtifactServer();
    const url = `${server.url}/model.onnx`;
    await server.close();
    server = undefined;
    const downloader = createDownloader({ https: false, concurrency: 4, maxPauseMs: 50 });
    await expect(downloader.download({ url, sha256, size: body.length })).rejects.toMatchObject({ code: 'EF_DOWNLOAD_FAILED' });
    downloader.close();
  });
});
