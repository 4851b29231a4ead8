import { hvError, sleep, throwIfAborted } from '../driver-errors';
import { ObservedPowerState, ServerRef } from '../hypervisor-driver';
import { canonicalDomainUuid } from './domain-identity';
import { isDomainNotFound, isNotRunning } from './errors';
import { parseDomStatsStates, parseUuidNameList } from './parsers';
import { Toolbox } from './tools/toolbox';

/** The power side of the driver: a server's domain found by UUID and name, started and stopped. */

/** Every domain's canonical UUID with its name, from one `virsh list`. */
async function domainNamesByUuid(tools: Toolbox): Promise<Map<string, string>> {
  // `virsh domuuid <name>` would read an all-digit name as a domain id: the list matches names only.
  const args = ['list', '--all', '--uuid', '--name'];
  const r = await tools.virsh.raw(args);
  if (r.code !== 0) throw tools.virsh.failure(args, r);
  const { pairs, bad } = parseUuidNameList(r.stdout);
  const names = new Map<string, string>();
  for (const [uuid, name] of pairs) {
    const canonical = canonicalDomainUuid(uuid);
    if (!canonical)
      throw hvError('hypervisor_error', `unexpected virsh list --uuid --name line: ${uuid} ${name}`);
    names.set(canonical, name);
  }
  if (bad !== null) {
    throw hvError('hypervisor_error', `unexpected virsh list --uuid --name line: ${bad.slice(0, 200)}`);
  }
  return names;
}

/** The UUID of the domain named exactly `name`. */
export async function findDomainUuid(tools: Toolbox, name: string): Promise<string> {
  for (const [uuid, n] of await domainNamesByUuid(tools)) if (n === name) return uuid;
  throw hvError('domain_not_found', `no domain named ${name}`);
}

// virDomainState and the one virDomainShutoffReason that matters here (libvirt-domain.h).
const VIR_DOMAIN_STATES: Record<number, ObservedPowerState> = {
  0: 'running', // no state: libvirt says nothing is wrong, only that it cannot tell
  1: 'running',
  2: 'running', // blocked on a resource: still running
  3: 'paused',
  4: 'running', // being shut down
  5: 'stopped',
  6: 'crashed',
  7: 'paused', // suspended by guest power management
};
const VIR_DOMAIN_SHUTOFF_CRASHED = 3;

/**
 * The observed state of each server's domain, from two virsh calls whatever the number of servers:
 * the UUID-to-name list (a server is found by UUID and must still have its name) and every domain's
 * state. A domain undefined between the two calls is `missing`.
 */
export async function observePowerStates(
  tools: Toolbox,
  servers: readonly ServerRef[],
): Promise<ObservedPowerState[]> {
  if (servers.length === 0) return [];
  const names = await domainNamesByUuid(tools);
  const args = ['domstats', '--state'];
  const r = await tools.virsh.raw(args);
  if (r.code !== 0) throw tools.virsh.failure(args, r);
  const states = parseDomStatsStates(r.stdout);
  return servers.map((server) => {
    const uuid = server.domainUuid === null ? null : canonicalDomainUuid(server.domainUuid);
    if (uuid === null || names.get(uuid) !== server.domain) return 'missing';
    const s = states.get(server.domain);
    if (!s) return 'missing';
    if (s.state === 5 && s.reason === VIR_DOMAIN_SHUTOFF_CRASHED) return 'crashed';
    return VIR_DOMAIN_STATES[s.state] ?? 'running';
  });
}

/** Starts the server's domain unless it runs. */
export async function startDomain(tools: Toolbox, server: ServerRef): Promise<void> {
  const { uuid: dom, state } = await domainOf(tools, server);
  if (state !== 'shut off') return;
  const r = await tools.virsh.raw(['start', '--domain', dom]);
  if (r.code === 0) return;
  if (/already (active|running)/i.test(r.stderr)) return;
  throw tools.virsh.failure(['start', '--domain', dom], r);
}

/** Shuts the server's domain down gracefully, powering it off after `graceSeconds`. */
export async function stopDomain(
  tools: Toolbox,
  server: ServerRef,
  graceSeconds: number,
): Promise<{ forced: boolean }> {
  const { uuid: dom, state } = await domainOf(tools, server);
  if (state === 'shut off') return { forced: false };
  // Other refusals than "not found" (agent hung, ...) fall through to the forced path after the grace.
  await requestShutdown(tools, dom);
  if (await waitForState(tools, dom, 'shut off', graceSeconds * 1000)) return { forced: false };
  return { forced: await destroy(tools, dom) };
}

/** Powers the server's domain off at once (`virsh destroy`) unless it is shut off. */
export async function powerOffDomain(tools: Toolbox, server: ServerRef): Promise<void> {
  const { uuid: dom, state } = await domainOf(tools, server);
  if (state === 'shut off') return;
  await destroy(tools, dom);
}

/**
 * Asks the server's domain to shut down and waits up to `graceSeconds` for it to be shut off; never
 * forces it. A refusal of the request itself (no ACPI, agent hung) is a guest that did not stop in time
 * too: waiting tells whether it went down anyway.
 */
export async function shutdownDomain(
  tools: Toolbox,
  server: ServerRef,
  graceSeconds: number,
  signal?: AbortSignal,
): Promise<void> {
  throwIfAborted(signal);
  const { uuid: dom, state } = await domainOf(tools, server);
  if (state === 'shut off') return;
  await requestShutdown(tools, dom);
  if (await waitForState(tools, dom, 'shut off', graceSeconds * 1000, signal)) return;
  throw hvError('shutdown_timeout', `domain ${dom} still running ${graceSeconds} s after virsh shutdown`);
}

/** `virsh shutdown` (libvirt picks the guest agent when it is connected, else ACPI). */
async function requestShutdown(tools: Toolbox, dom: string): Promise<void> {
  const r = await tools.virsh.raw(['shutdown', '--domain', dom]);
  if (r.code !== 0 && !isNotRunning(r.stderr) && isDomainNotFound(r.stderr)) {
    throw tools.virsh.failure(['shutdown'], r);
  }
}

/** `virsh destroy`, waiting until the domain is shut off; whether it was still running to destroy. */
async function destroy(tools: Toolbox, dom: string): Promise<boolean> {
  const d = await tools.virsh.raw(['destroy', '--domain', dom]);
  if (d.code !== 0) {
    if (isNotRunning(d.stderr)) return false; // it went down at the last moment
    throw tools.virsh.failure(['destroy', '--domain', dom], d);
  }
  if (!(await waitForState(tools, dom, 'shut off', 30_000))) {
    throw hvError('hypervisor_error', 'domain still not shut off 30 s after virsh destroy');
  }
  return true;
}

/**
 * The domain of `server` as every virsh call here addresses it — its UUID, never its name (virsh
 * reads a name such as `12` as a domain id) — and its state, from one `virsh dominfo`, which also
 * says the domain's name: a domain with this UUID that no longer has the server's name (renamed, or
 * undefined and another defined under the name) is `domain_not_found`, never another VM.
 */
export async function domainOf(tools: Toolbox, server: ServerRef): Promise<{ uuid: string; state: string }> {
  const uuid = serverDomainUuid(server);
  const { name, state } = await tools.virsh.domInfo(uuid);
  return checkedDomain(server, uuid, name, state);
}

/** The server's domain UUID, canonical (what virsh is given), else `domain_not_found`. */
export function serverDomainUuid(server: ServerRef): string {
  const uuid = server.domainUuid === null ? null : canonicalDomainUuid(server.domainUuid);
  if (uuid === null) {
    throw hvError('domain_not_found', `server ${server.id} has no valid domain UUID (${server.domainUuid})`);
  }
  return uuid;
}

/** What `virsh dominfo` said of the server's domain, refused when it is another domain now. */
export function checkedDomain(
  server: ServerRef,
  uuid: string,
  name: string,
  state: string,
): { uuid: string; state: string } {
  if (name !== server.domain) {
    throw hvError(
      'domain_not_found',
      `domain ${uuid} is named "${name}", the server's domain is "${server.domain}" (renamed or redefined)`,
    );
  }
  if (!state) throw hvError('hypervisor_error', `no state in virsh dominfo output for ${uuid}`);
  return { uuid, state };
}

async function waitForState(
  tools: Toolbox,
  domain: string,
  want: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await tools.virsh.domState(domain)) === want) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(tools.pollIntervalMs, Math.max(1, deadline - Date.now())), signal);
  }
}
