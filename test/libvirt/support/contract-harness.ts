import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { ServerRef, SnapshotRef } from '../../../src/hypervisor/hypervisor-driver';
import { LibvirtHypervisorDriver } from '../../../src/hypervisor/libvirt/libvirt-hypervisor-driver';
import { BackupDriverHarness } from '../../contract/backup-driver.contract';
import { domainUuid, Lab, LIBVIRT_URI, virsh } from './lab';

/**
 * The shared driver contract, run against the real libvirt driver on real qcow2 images and real
 * (software-emulated) domains. The test domains boot no OS, so nothing answers a shutdown request:
 * `stop` must fall back to the forced power-off after the grace period (`expectForcedStop`).
 */
export function libvirtHarness(): () => Promise<BackupDriverHarness> {
  return async () => {
    const lab = await Lab.create('contract');
    const snapshotDir = await lab.mkdir('vpstest-contract-snapshots');
    const driver = new LibvirtHypervisorDriver({
      uri: LIBVIRT_URI,
      imageRoots: [lab.dir],
      maxConcurrentCopies: 2,
      pollIntervalMs: 100,
    });
    let servers = 0;
    const file = (snap: SnapshotRef): string => path.join(snap.snapshotDir, `${snap.id}.qcow2`);
    return {
      driver,
      snapshotDir,
      expectForcedStop: true,
      stopGraceSeconds: 1,
      async makeServer({ running, sizeMiB = 32 }): Promise<ServerRef> {
        const domain = lab.uniqueName('contract-dom');
        const diskPath = await lab.makeDisk(`${domain}-disk.qcow2`, sizeMiB);
        await lab.defineSimpleDomain(domain, diskPath);
        if (running) await virsh('start', '--domain', domain);
        return { id: ++servers, domain, diskPath, domainUuid: await domainUuid(domain) };
      },
      async writeDisk(server, offset, data) {
        await lab.writeDisk(server.diskPath, offset, data);
      },
      async diskDigest(server) {
        return lab.guestDigest(server.diskPath, true);
      },
      async snapshotDigest(_server, snap) {
        return lab.guestDigest(file(snap));
      },
      async corruptSnapshot(snap) {
        const f = file(snap);
        const st = await fsp.stat(f);
        await fsp.truncate(f, Math.floor(st.size / 2));
      },
      async leavePartial(snap) {
        await fsp.writeFile(`${file(snap)}.partial`, Buffer.alloc(256 * 1024, 1));
      },
      async crashHypervisor(server) {
        await lab.killQemu(server.domain);
      },
      async dispose() {
        await lab.dispose();
      },
    };
  };
}
