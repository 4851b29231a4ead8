import { createHypervisorDriver, HypervisorDriverBuilder } from './driver-factory';
import { FakeHypervisorDriver } from './fake/fake-hypervisor-driver';
import { HypervisorDriver } from './hypervisor-driver';

describe('createHypervisorDriver', () => {
  it('builds the driver registered under the name, and only that one', () => {
    const fake = new FakeHypervisorDriver();
    const other = jest.fn<HypervisorDriver, []>(() => {
      throw new Error('must not be built');
    });
    const driver = createHypervisorDriver('fake', { fake: () => fake, libvirt: other });
    expect(driver).toBe(fake);
    expect(other).not.toHaveBeenCalled();
  });

  it('throws on an unknown name, listing the known ones sorted', () => {
    const builders: Record<string, HypervisorDriverBuilder> = {
      libvirt: () => new FakeHypervisorDriver(),
      fake: () => new FakeHypervisorDriver(),
    };
    expect(() => createHypervisorDriver('libvrt', builders)).toThrow(
      'Unknown hypervisor driver "libvrt" (known: fake, libvirt)',
    );
  });

  it('does not treat inherited object properties as drivers', () => {
    expect(() => createHypervisorDriver('toString', {})).toThrow(
      'Unknown hypervisor driver "toString" (known: none)',
    );
    expect(() => createHypervisorDriver('__proto__', { fake: () => new FakeHypervisorDriver() })).toThrow(
      'Unknown hypervisor driver "__proto__" (known: fake)',
    );
  });

  it('lets a builder error propagate', () => {
    expect(() =>
      createHypervisorDriver('libvirt', {
        libvirt: () => {
          throw new Error('no uri configured');
        },
      }),
    ).toThrow('no uri configured');
  });
});
