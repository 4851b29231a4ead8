import { LibvirtHypervisorDriver } from '../hypervisor/libvirt/libvirt-hypervisor-driver';
import { readDomainDisk } from '../hypervisor/libvirt/domain-inspector';
import { ProcessRunner } from '../hypervisor/libvirt/process-runner';

/** What `server import` needs to know about an existing libvirt domain. */
export class DomainInspector {
  constructor(private readonly uri: string) {}

  async inspect(domain: string): Promise<{ diskPath: string; status: 'running' | 'stopped' }> {
    const { diskPath } = await readDomainDisk(new ProcessRunner(), this.uri, domain);
    const power = await new LibvirtHypervisorDriver({ uri: this.uri }).getPowerState({
      id: 0,
      domain,
      diskPath,
    });
    return { diskPath, status: power };
  }
}
