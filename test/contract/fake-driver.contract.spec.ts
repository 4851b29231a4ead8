import { createHash } from 'node:crypto';

import {
  FakeHypervisorDriver,
  FakeHypervisorDriverOptions,
  fakeDomainUuid,
} from '../../src/hypervisor/fake/fake-hypervisor-driver';
import { ServerRef } from '../../src/hypervisor/hypervisor-driver';
import { BackupDriverHarness, describeBackupDriverContract } from './backup-driver.contract';
import { describeHypervisorDriverContract } from './hypervisor-driver.contract';

let harnessCount = 0;

/**
 * A harness around one fresh fake. Disks are scaled down: `sizeMiB` MiB become `sizeMiB` KiB (unless
 * `bytesPerMiB` says otherwise: the backup contract needs real 64 KiB clusters).
 * Names carry a distinctive prefix so the suite's "message reveals no platform detail" check is meaningful.
 */
function fakeHarness(
  options: FakeHypervisorDriverOptions,
  gracefulShutdown = true,
  bytesPerMiB = 1024,
): () => Promise<BackupDriverHarness> {
  return async () => {
    const n = ++harnessCount;
    const driver = new FakeHypervisorDriver({ copyDelayMs: 8, ...options });
    const snapshotDir = `/srv/fake-contract-${n}/snapshots`;
    let serverCount = 0;
    const digest = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
    return {
      driver,
      snapshotDir,
      expectForcedStop: !gracefulShutdown,
      async makeServer({ running, sizeMiB = 1 }): Promise<ServerRef> {
        const id = ++serverCount;
        const domain = `fake-contract-dom-${n}-${id}`;
        const diskPath = `/srv/fake-contract-${n}/disks/${domain}.qcow2`;
        driver.defineDomain(domain, {
          diskPath,
          running,
          diskBytes: Buffer.alloc(sizeMiB * bytesPerMiB),
          gracefulShutdown,
        });
        return { id, domain, diskPath, domainUuid: fakeDomainUuid(domain) };
      },
      async writeDisk(server, offset, data) {
        driver.writeDisk(server.domain, data, offset);
      },
      async diskDigest(server) {
        return digest(driver.readDisk(server.domain));
      },
      async snapshotDigest(_server, snap) {
        const bytes = driver.readSnapshot(snap.snapshotDir, snap.id);
        if (!bytes) throw new Error(`no stored snapshot ${snap.id}`);
        return digest(bytes);
      },
      async corruptSnapshot(snap) {
        driver.corruptSnapshot(snap.snapshotDir, snap.id);
      },
      async leavePartial(snap) {
        driver.markPartial(snap.snapshotDir, snap.id);
      },
      async crashHypervisor(server) {
        driver.crashCheckpoints(server.domain);
        driver.setPowerState(server.domain, 'stopped');
      },
      async dispose() {
        driver.clearFailures();
      },
    };
  };
}

describeHypervisorDriverContract('fake (default: live, crash-consistent)', fakeHarness({}));
describeHypervisorDriverContract(
  'fake (no live snapshots)',
  fakeHarness({ capabilities: { liveSnapshot: false } }),
);
describeHypervisorDriverContract(
  'fake (quiesce, uncooperative guest, no copy delay)',
  fakeHarness({ capabilities: { liveSnapshot: true, quiesce: true }, copyDelayMs: 0 }, false),
);
describeBackupDriverContract('fake', fakeHarness({}, true, 1024 * 1024));
describeBackupDriverContract(
  'fake (quiesce, no copy delay)',
  fakeHarness({ capabilities: { liveSnapshot: true, quiesce: true }, copyDelayMs: 0 }, true, 1024 * 1024),
);
