import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { hvError, sleep } from '../../driver-errors';
import { DiskExtent } from '../../hypervisor-driver';
import { stepError } from '../errors';
import { ProcessRunner } from '../process-runner';
import { childController } from '../together';
import { QemuImg } from './qemu-img';

/** How long qemu-nbd may take to listen on its socket. */
const LISTEN_TIMEOUT_MS = 15_000;

/**
 * `qemu-nbd`, used for one thing: the dirty extents of a shut-off disk's bitmap. qemu-img has no
 * command that prints a bitmap; an NBD export carrying it (`-B`), mapped by `qemu-img map` with
 * `x-dirty-bitmap`, does — clean ranges read as data, dirty ones as holes.
 */
export class QemuNbd {
  constructor(
    private readonly runner: ProcessRunner,
    readonly path: string,
    private readonly qemuImg: QemuImg,
    private readonly timeoutMs: number,
  ) {}

  /** The ranges bitmap `bitmap` of `disk` marks dirty, in order (read-only; the disk must be shut off). */
  async dirtyExtents(disk: string, bitmap: string, signal?: AbortSignal): Promise<DiskExtent[]> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vps-nbd-'));
    const socket = path.join(dir, 'nbd.sock');
    const { controller, dispose } = childController(signal);
    const args = ['-r', '-f', 'qcow2', '-B', bitmap, '-k', socket, disk];
    const served = this.runner
      .run(this.path, args, { timeoutMs: this.timeoutMs, signal: controller.signal, env: { LC_ALL: 'C' } })
      .then(
        (r) => ({ r }),
        (e: unknown) => ({ e }),
      );
    type Ended = { r?: { code: number | null; stderr: string }; e?: unknown };
    const state: { ended: Ended | null } = { ended: null };
    void served.then((x) => (state.ended = x));
    try {
      const deadline = Date.now() + LISTEN_TIMEOUT_MS;
      while (
        !(await fsp.stat(socket).then(
          () => true,
          () => false,
        ))
      ) {
        if (state.ended !== null) {
          const { r, e } = state.ended;
          if (e) throw stepError(e, 'hypervisor_error', 'qemu-nbd');
          throw hvError(
            'hypervisor_error',
            `qemu-nbd ${args.join(' ')} exited ${r?.code}: ${r?.stderr.trim()}`,
          );
        }
        if (Date.now() > deadline)
          throw hvError('timeout', `qemu-nbd did not listen within ${LISTEN_TIMEOUT_MS} ms`);
        await sleep(10, signal);
      }
      const spec = `driver=nbd,server.type=unix,server.path=${socket},x-dirty-bitmap=qemu:dirty-bitmap:${bitmap}`;
      const entries = await this.qemuImg.map(spec, { imageOpts: true, signal });
      return entries.filter((e) => !e.data).map((e) => ({ offset: e.start, length: e.length }));
    } finally {
      controller.abort();
      await served;
      dispose();
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}
