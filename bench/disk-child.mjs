/* global performance */
// A long-lived process holding the real libvirt driver (from the bench build), as a worker does; the
// parent sends one JSON command per line and samples this process's RSS (and qemu-img's) meanwhile.
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const { LibvirtHypervisorDriver } = require(
  path.join(process.argv[2], 'dist/hypervisor/libvirt/libvirt-hypervisor-driver.js'),
);
// argv[3]: the directory holding the run's disks, the driver's only image root.
const common = { uri: process.env.LIBVIRT_URI || 'qemu:///system', imageRoots: [process.argv[3]] };
const drivers = {
  none: new LibvirtHypervisorDriver(common),
  zstd: new LibvirtHypervisorDriver({ ...common, compression: 'zstd' }),
};
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  const cmd = JSON.parse(line);
  const d = drivers[cmd.compression ?? 'none'];
  const t0 = performance.now();
  try {
    let result = null;
    if (cmd.op === 'create') result = await d.createSnapshot(cmd.server, cmd.snap, () => undefined);
    else if (cmd.op === 'restore') await d.restoreSnapshot(cmd.server, cmd.snap, () => undefined);
    else if (cmd.op === 'delete') await d.deleteSnapshot(cmd.server, cmd.snap);
    else if (cmd.op === 'state') result = await d.getPowerState(cmd.server);
    process.stdout.write(`${JSON.stringify({ ok: true, ms: performance.now() - t0, result })}\n`);
  } catch (e) {
    process.stdout.write(
      `${JSON.stringify({ ok: false, ms: performance.now() - t0, error: String(e?.code ?? '') + ' ' + String(e?.message ?? e) })}\n`,
    );
  }
}
