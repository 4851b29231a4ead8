/**
 * Boots the tiny guest the way the libvirt tests do — this checkout's `ensureTinyGuest` and `Lab` —
 * waits for it to say it is ready, removes everything, and prints one JSON line: where the guest's
 * kernel and the lab's disk were, and how long each step took. Run from another checkout by
 * test/e2e/newcomer-clone.e2e-spec.ts (`ts-node --transpile-only`), to prove QEMU can read what that
 * checkout's scripts make wherever it was cloned.
 */
import { ensureTinyGuest, Lab, virsh } from './lab';

async function main(): Promise<void> {
  const t0 = Date.now();
  const guestDir = await ensureTinyGuest();
  const built = Date.now();
  const lab = await Lab.create('boot');
  try {
    const name = lab.uniqueName('boot');
    const disk = await lab.makeExt4Disk(`${name}.qcow2`, 32);
    const serial = await lab.defineGuestDomain(name, disk, guestDir, { agent: false });
    const booting = Date.now();
    await virsh('start', '--domain', name);
    await lab.waitForSerial(serial, 'TINYGUEST READY', 120_000);
    const ready = Date.now();
    process.stdout.write(
      `${JSON.stringify({ guestDir, disk, guestMs: built - t0, bootMs: ready - booting })}\n`,
    );
  } finally {
    await lab.dispose();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
