import { HypervisorDriver } from './hypervisor-driver';

/** Builds one driver. Lazy, so only the configured driver is constructed (and so touches its host). */
export type HypervisorDriverBuilder = () => HypervisorDriver;

/**
 * Builds the hypervisor driver configured by `name` from a map of builders, e.g.
 *
 * ```ts
 * createHypervisorDriver(config.driver, {
 *   fake: () => FakeHypervisorDriver.fromEnv(),
 *   libvirt: () => new LibvirtHypervisorDriver({ uri: config.libvirtUri }),
 * });
 * ```
 *
 * Throws `Unknown hypervisor driver "x" (known: a, b)` for a name that has no builder, so a typo in the
 * configuration stops the process at start-up instead of falling back to some default.
 */
export function createHypervisorDriver(
  name: string,
  builders: Readonly<Record<string, HypervisorDriverBuilder>>,
): HypervisorDriver {
  if (!Object.prototype.hasOwnProperty.call(builders, name)) {
    const known = Object.keys(builders).sort().join(', ');
    throw new Error(`Unknown hypervisor driver "${name}" (known: ${known || 'none'})`);
  }
  return builders[name]();
}
