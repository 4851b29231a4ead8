import { hvError } from '../../driver-errors';
import { DISK_SIDE_FILE_SUFFIXES } from '../../host-paths';
import { BackupReadOptions, BackupReadSession, ServerRef } from '../../hypervisor-driver';
import { checkedDomain, domainOf, serverDomainUuid } from '../domain-power';
import { stepError } from '../errors';
import { Toolbox } from '../tools/toolbox';
import { openLiveRead } from './live-read';
import { openOfflineRead } from './offline-read';

/**
 * A backup read of the server's disk, as its domain's state asks: a stopped server's disk read in place
 * (offline-read.ts), a running one's through a push backup job into a file beside the disk
 * (live-read.ts; `requireRoom` refuses it first when the disk's file system cannot hold that file).
 * The caller has checked the disk is inside the node's image roots.
 */
export async function openBackupRead(
  tools: Toolbox,
  server: ServerRef,
  opts: BackupReadOptions,
  requireRoom: (bytes: number) => Promise<void>,
): Promise<BackupReadSession> {
  // The domain, its checkpoints and disks from one virsh process, and the disk's bitmaps beside it:
  // what a stopped server's read needs first, at the cost of one tool call's time instead of two in
  // a row. `qemu-img info` cannot open a running domain's disk (its lock): that answer goes unused.
  const uuid = serverDomainUuid(server);
  const settle = <T>(p: Promise<T>) =>
    p.then(
      (v) => ({ v }),
      (e: unknown) => ({ e }),
    );
  const [surveyed, seen] = await Promise.all([
    settle(tools.virsh.survey(uuid, opts.signal)),
    settle(tools.qemuImg.bitmaps(server.diskPath)),
  ]);
  if ('e' in surveyed) throw surveyed.e;
  const survey = surveyed.v;
  const { uuid: dom, state } = survey
    ? checkedDomain(server, uuid, survey.name, survey.state)
    : await domainOf(tools, server);
  try {
    if (state === 'shut off') {
      // Without either answer (a call failed, the domain stopped between them) it asks again itself.
      const known =
        survey && 'v' in seen ? { records: survey.checkpoints, bitmaps: seen.v, disks: survey.disks } : null;
      return await openOfflineRead(tools, server, dom, opts, known);
    }
    const target = `${server.diskPath}${DISK_SIDE_FILE_SUFFIXES.backupRead}`;
    return await openLiveRead(tools, server, dom, target, opts, requireRoom);
  } catch (e) {
    throw stepError(opts.signal?.aborted ? hvError('cancelled', String(e)) : e, 'hypervisor_error');
  }
}
