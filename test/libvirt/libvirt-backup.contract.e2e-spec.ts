import { describeBackupDriverContract } from '../contract/backup-driver.contract';
import { libvirtHarness } from './support/contract-harness';
import { describeLibvirt } from './support/lab';

jest.setTimeout(180_000);

describeLibvirt('libvirt driver: backup contract', () => {
  describeBackupDriverContract('libvirt (real qcow2 images, TCG domains without an OS)', libvirtHarness());
});
