/**
 * A worker that dies during a backup read: opens a backup read of a shut-off disk with the real
 * libvirt driver, prints `reading` once it is open (qemu-io holding the disk) and keeps it open — the
 * test then SIGKILLs this process. Run with `node -r ts-node/register/transpile-only`.
 * Arguments: uri domain domainUuid diskPath checkpoint
 */
import * as path from 'node:path';
import { LibvirtHypervisorDriver } from '../../../src/hypervisor/libvirt/libvirt-hypervisor-driver';

const [uri, domain, domainUuid, diskPath, checkpoint] = process.argv.slice(2);
void new LibvirtHypervisorDriver({ uri, imageRoots: [path.dirname(diskPath)] })
  .openBackupRead({ id: 1, domain, domainUuid, diskPath }, { since: null, checkpoint })
  .then(() => process.stdout.write('reading\n'));
// Keeps the process alive until it is killed.
setInterval(() => undefined, 60_000);
