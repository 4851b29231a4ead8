import { describeHypervisorDriverContract } from '../contract/hypervisor-driver.contract';
import { libvirtHarness } from './support/contract-harness';
import { describeLibvirt } from './support/lab';

jest.setTimeout(180_000);

describeLibvirt('libvirt driver: shared contract', () => {
  describeHypervisorDriverContract(
    'libvirt (real qcow2 images, TCG domains without an OS)',
    libvirtHarness(),
  );
});
