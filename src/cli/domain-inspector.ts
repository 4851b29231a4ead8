import { Injectable } from '@nestjs/common';
import { LibvirtHypervisorDriver } from '../hypervisor/libvirt/libvirt-hypervisor-driver';
import { readDomainDisk } from '../hypervisor/libvirt/domain-inspector';
import { ProcessRunner } from '../hypervisor/libvirt/process-runner';

/** A libvirt node as the CLI reaches it. */
export interface InspectedNode {
  uri: string;
  imageRoots: readonly string[];
}

/** What `server create` and `server import` learn about an existing libvirt domain on its node. */
export class DomainInspector {
  private readonly driver: LibvirtHypervisorDriver;

  constructor(private readonly node: InspectedNode) {
    this.driver = new LibvirtHypervisorDriver({ uri: node.uri, imageRoots: node.imageRoots });
  }

  /** The UUID of the domain named exactly `domain` (domain_not_found when there is none). */
  uuidOf(domain: string): Promise<string> {
    return this.driver.findDomainUuid(domain);
  }

  /** Its UUID, its first file-backed disk and its power state, all read by the UUID. */
  async inspect(
    domain: string,
  ): Promise<{ domainUuid: string; diskPath: string; status: 'running' | 'stopped' }> {
    const domainUuid = await this.uuidOf(domain);
    const { diskPath } = await readDomainDisk(new ProcessRunner(), this.node.uri, domainUuid);
    // The power state also checks that the UUID still has the name (the domain was not replaced meanwhile).
    const status = await this.driver.getPowerState({ id: 0, domain, diskPath, domainUuid });
    return { domainUuid, diskPath, status };
  }
}

/** Makes the inspector of a node (a class of its own so tests can hand the CLI another). */
@Injectable()
export class DomainInspectors {
  forNode(node: InspectedNode): DomainInspector {
    return new DomainInspector(node);
  }
}
