import { throwIfAborted } from '../../driver-errors';
import {
  BackupReadOptions,
  BackupReadSession,
  FullReadReason,
  isHypervisorError,
  ServerRef,
} from '../../hypervisor-driver';
import { pushBackup } from '../copy/push-backup';
import { removeIfExists, removeQuietly } from '../files';
import { Toolbox } from '../tools/toolbox';
import { dropCheckpointsExcept, dropLive } from './checkpoints';
import { clusterAligned, MappedImage, readSession } from './mapped-image';

/** libvirt's refusal of an incremental backup whose base bitmap a crash broke or lost. */
const INCONSISTENT = /checkpoint inconsistent|missing or broken bitmap|bitmap .*(inconsistent|in.use)/i;

/**
 * A backup read of a running server's disk: a push backup job (the snapshot code's, quiesced through
 * the guest agent when it answers) into `target`, a qcow2 next to the disk, that creates the new
 * checkpoint atomically with its start — incremental from `since` when libvirt has it, else full. An
 * incremental job libvirt refuses because the base bitmap is broken (qemu was killed) is redone full
 * (`bitmap_inconsistent`), the broken checkpoints dropped. The view is read from the target in place
 * (its own clusters only: an incremental target names the live disk as its backing file).
 */
export async function openLiveRead(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  target: string,
  opts: BackupReadOptions,
  requireSpace: (bytes: number) => Promise<void>,
): Promise<BackupReadSession> {
  const { signal } = opts;
  const records = await tools.virsh.checkpointNames(dom);
  let reason: FullReadReason | null = null;
  if (opts.since === null) reason = 'no_previous_backup';
  else if (!records.includes(opts.since)) reason = 'checkpoint_missing';
  for (const name of records.filter((n) => n !== (reason === null ? opts.since : null))) {
    await dropLive(tools, dom, name);
  }
  const { virtualSize } = await tools.qemuImg.info(server.diskPath, true);
  await removeIfExists(target);
  const push = async (incremental: string | null) => {
    // The target beside the disk holds what the job copies: refuse before qemu fills the disk's file
    // system (the guest's own writes would fail too) rather than mid-job.
    const estimate = incremental === null ? null : await tools.virsh.checkpointSizeBytes(dom, incremental);
    await requireSpace(estimate ?? (await tools.qemuImg.measure(server.diskPath, signal)));
    return pushBackup(tools, server, dom, target, virtualSize, signal, () => undefined, {
      incremental,
      create: opts.checkpoint,
    });
  };
  let image: MappedImage | null = null;
  try {
    let consistency;
    try {
      consistency = await push(reason === null ? opts.since : null);
    } catch (e) {
      if (reason !== null || !isHypervisorError(e) || !INCONSISTENT.test(e.detail ?? '')) throw e;
      throwIfAborted(signal);
      reason = 'bitmap_inconsistent';
      await dropCheckpointsExcept(tools, server, dom, null);
      await removeIfExists(target);
      consistency = await push(null);
    }
    throwIfAborted(signal);
    const ownClusters = JSON.stringify({
      driver: 'qcow2',
      backing: null,
      file: { driver: 'file', filename: target },
    });
    const entries = await tools.qemuImg.map(`json:${ownClusters}`, { signal });
    image = await MappedImage.open(target, entries, virtualSize);
    const changed = entries
      .filter((e) => e.depth === 0 && e.present)
      .map((e) => ({ offset: e.start, length: e.length }));
    const base = reason === null ? opts.since : null;
    return readSession({
      image,
      // A full read lists what holds data; an incremental one also the clusters written as zeros.
      extents: reason === null ? clusterAligned(changed, virtualSize) : image.dataExtents(),
      fullReason: reason,
      consistency,
      checkpoint: opts.checkpoint,
      release: async (keep) => {
        await removeQuietly(target);
        await dropCheckpointsExcept(tools, server, dom, keep ? opts.checkpoint : base);
      },
    });
  } catch (e) {
    await image?.close();
    await removeQuietly(target);
    await dropCheckpointsExcept(tools, server, dom, reason === null ? opts.since : null).catch(
      () => undefined,
    );
    throw e;
  }
}
