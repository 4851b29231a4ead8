/**
 * How a server's libvirt domain is named and identified. virsh resolves a `--domain` argument as a
 * domain id first (a running domain's small number), then as a UUID, and only then as a name: a domain
 * named `12` or named like another domain's UUID is another VM to virsh. So the driver addresses
 * domains by UUID only, and names that virsh would read as an id or a UUID are refused as names.
 */

/** A domain UUID as libvirt prints it (lower case, 8-4-4-4-12). */
const DOMAIN_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Letters, digits, `.`, `_`, `+` and `-`, starting with a letter or digit, at most 255 characters. */
export const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$/;

export const DOMAIN_NAME_MESSAGE =
  'domain must be a libvirt domain name: 1-255 letters, digits, ".", "_", "+" or "-", starting with a letter or digit';
export const DOMAIN_UUID_MESSAGE =
  'domain_uuid must be a UUID such as 4dea22b3-1d52-d8f3-2516-782e98ab3fa0 (virsh domuuid)';

/** The UUID in the form libvirt prints, or null when `text` is not a UUID. */
export function canonicalDomainUuid(text: string): string | null {
  const lower = text.toLowerCase();
  return DOMAIN_UUID.test(lower) ? lower : null;
}

/** Why `name` cannot be a server's domain name (null when it can). */
export function domainNameProblem(name: string): string | null {
  if (!DOMAIN_NAME.test(name)) return DOMAIN_NAME_MESSAGE;
  if (/^[0-9]+$/.test(name))
    return 'domain must not be all digits: virsh reads it as the id of a running domain';
  // libvirt parses a UUID as 32 hex digits with dashes between the pairs: refuse every such spelling.
  if (/^[0-9A-Fa-f-]+$/.test(name) && name.replace(/-/g, '').length === 32)
    return "domain must not look like a UUID: virsh reads it as a domain's UUID";
  return null;
}
