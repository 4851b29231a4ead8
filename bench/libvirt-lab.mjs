// Shared by the disk and worker-memory benchmarks: libvirt domains defined for a run, removed after.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export const sh = (cmd, args) =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/**
 * A shut-off 64 MiB domain whose only disk is `disk` (qcow2): what the driver snapshots and restores.
 * Returns its UUID, by which the driver addresses it.
 */
export function defineDomain(name, disk) {
  const xml = `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='${disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
  const f = `${disk}.xml`;
  fs.writeFileSync(f, xml);
  sh('virsh', ['-c', 'qemu:///system', 'define', f]);
  fs.rmSync(f);
  return sh('virsh', ['-c', 'qemu:///system', 'domuuid', name]).trim();
}

export function undefineDomain(name) {
  try {
    sh('virsh', ['-c', 'qemu:///system', 'undefine', name]);
  } catch {
    /* already gone */
  }
}
