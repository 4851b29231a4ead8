import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { hvError } from '../../driver-errors';
import { FullReadReason, ServerRef } from '../../hypervisor-driver';
import { DomainDisk } from '../domain-xml';
import { findDisk } from '../copy/push-backup';
import { checkpointXml } from '../domain-xml';
import { ImageBitmap } from '../tools/qemu-img';
import { Toolbox } from '../tools/toolbox';

/**
 * A disk's checkpoints: libvirt's records of them and the persistent bitmaps of the same names in the
 * qcow2. A running domain's are changed through libvirt (`checkpoint-delete` drops record and bitmap);
 * a shut-off domain's with `qemu-img bitmap` and libvirt's records alone (virsh cannot delete the
 * checkpoints of a shut-off domain). The driver owns every checkpoint of a server's domain: a backup
 * keeps one, the base of the next.
 */

/** libvirt's records and the disk's bitmaps of a shut-off disk, as a backup read first sees them. */
export interface OfflineCheckpoints {
  readonly records: readonly string[];
  readonly bitmaps: readonly ImageBitmap[];
}

/** Asks libvirt and qemu-img for {@link OfflineCheckpoints} (both at once). */
export async function offlineCheckpoints(
  tools: Toolbox,
  dom: string,
  disk: string,
): Promise<OfflineCheckpoints> {
  const [records, bitmaps] = await Promise.all([
    tools.virsh.checkpointNames(dom),
    tools.qemuImg.bitmaps(disk),
  ]);
  return { records, bitmaps };
}

/** What libvirt and the bitmaps say of `since` on a shut-off disk: null when it can be trusted. */
export function offlineFullReason(
  seen: OfflineCheckpoints,
  since: string | null,
): { reason: FullReadReason | null; records: string[]; bitmaps: string[] } {
  const bitmap = seen.bitmaps.find((b) => b.name === since);
  let reason: FullReadReason | null = null;
  if (since === null) reason = 'no_previous_backup';
  else if (!seen.records.includes(since)) reason = 'checkpoint_missing';
  // A bitmap left `in-use` (qemu killed before it closed the disk) or lost with it.
  else if (!bitmap?.consistent) reason = 'bitmap_inconsistent';
  return { reason, records: [...seen.records], bitmaps: seen.bitmaps.map((b) => b.name) };
}

/** Drops checkpoints `names` of a shut-off disk: bitmaps (those present) and libvirt's records. */
export async function dropOffline(
  tools: Toolbox,
  dom: string,
  disk: string,
  names: { readonly records: readonly string[]; readonly bitmaps: readonly string[] },
): Promise<void> {
  for (const name of names.bitmaps) await tools.qemuImg.bitmap('remove', disk, name);
  for (const name of names.records) await tools.virsh.deleteCheckpoint(dom, name, true);
}

/**
 * Drops the domain's checkpoints other than `keep` (all of them when null), in whatever state the
 * domain is now: through libvirt while it runs (only the record when libvirt cannot find the bitmap,
 * as after a crash), else offline.
 */
export async function dropCheckpointsExcept(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  keep: string | null,
): Promise<void> {
  const state = await tools.virsh.domState(dom);
  if (state === 'shut off') return dropShutOffCheckpointsExcept(tools, server, dom, keep);
  for (const name of (await tools.virsh.checkpointNames(dom)).filter((n) => n !== keep)) {
    await dropLive(tools, dom, name);
  }
}

/** {@link dropCheckpointsExcept} for a caller that has just seen the domain shut off. */
export async function dropShutOffCheckpointsExcept(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  keep: string | null,
): Promise<void> {
  const [records, bitmaps] = await Promise.all([
    tools.virsh.checkpointNames(dom),
    tools.qemuImg.bitmaps(server.diskPath),
  ]);
  await dropOffline(tools, dom, server.diskPath, {
    records: records.filter((n) => n !== keep),
    bitmaps: bitmaps.map((b) => b.name).filter((n) => n !== keep),
  });
}

/**
 * Drops checkpoint `name` of a disk that was shut off and locked since `name` was made, so its record
 * and bitmap are known to be there: two tool calls where {@link dropCheckpointsExcept} asks libvirt and
 * qemu-img first. libvirt's record is metadata only, dropped at once; the bitmap once `unlocked` (the
 * read's image lock let go) resolves. Anything unexpected (the domain started meanwhile, a call
 * refused) falls back to {@link dropCheckpointsExcept}.
 */
export async function dropKnownOffline(
  tools: Toolbox,
  server: ServerRef,
  dom: string,
  name: string,
  keep: string | null,
  unlocked: Promise<void> = Promise.resolve(),
): Promise<void> {
  const done = await Promise.allSettled([
    tools.virsh.deleteCheckpoint(dom, name, true),
    unlocked.then(() => tools.qemuImg.bitmap('remove', server.diskPath, name)),
  ]);
  if (done.some((r) => r.status === 'rejected')) await dropCheckpointsExcept(tools, server, dom, keep);
}

/** Drops one checkpoint of a running domain; a broken one (no usable bitmap) by its record. */
export async function dropLive(tools: Toolbox, dom: string, name: string): Promise<void> {
  await tools.virsh
    .deleteCheckpoint(dom, name, false)
    .catch(() => tools.virsh.deleteCheckpoint(dom, name, true));
}

/**
 * libvirt's record of checkpoint `name` of a shut-off disk (its XML), refused when the disk is not
 * attached to the domain: asked before anything is changed.
 */
export async function offlineCheckpointXml(
  server: ServerRef,
  dom: string,
  name: string,
  parent: string | null,
  disks: readonly DomainDisk[],
): Promise<string> {
  const ours = await findDisk([...disks], server.diskPath);
  if (!ours?.target) throw hvError('hypervisor_error', `disk ${server.diskPath} is not attached to ${dom}`);
  const targets = disks.flatMap((d) => (d.target ? [d.target] : []));
  return checkpointXml(targets, ours.target, name, { parent, creationTime: Math.floor(Date.now() / 1000) });
}

/**
 * Records a checkpoint of a shut-off disk in libvirt (`checkpoint-create --redefine` of `xml`, from
 * {@link offlineCheckpointXml}), so a later live backup can start from it; its bitmap is added with
 * `qemu-img bitmap --add`. libvirt does not look at a shut-off domain's bitmaps when it records one,
 * so this may run while the bitmap is read.
 */
export async function recordOffline(tools: Toolbox, dom: string, xml: string): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vps-checkpoint-'));
  try {
    const file = path.join(dir, 'checkpoint.xml');
    await fsp.writeFile(file, xml, 'utf8');
    await tools.virsh.redefineCheckpoint(dom, file);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
