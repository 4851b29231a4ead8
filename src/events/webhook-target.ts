/**
 * Where a webhook may point. A customer's URL must not reach into the provider's own network (SSRF): an
 * address is refused when it is private, loopback, link-local, unique-local, multicast or otherwise
 * special, unless the operator allows its range (`WEBHOOK_ALLOW_ADDRESSES`); plain http only where
 * `WEBHOOK_ALLOW_HTTP` says so (never in production). The addresses are checked after DNS resolution
 * when the endpoint is created and again inside the sender's connect (`guardedLookup`): the address
 * checked is the address connected to, so a name that resolves elsewhere the second time (DNS
 * rebinding) gains nothing.
 */
import { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Ranges no webhook reaches unless allowed: RFC 6890 special-purpose blocks and their IPv6 peers. */
const SPECIAL_V4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.88.99.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4',
  '240.0.0.0/4',
];
const SPECIAL_V6 = [
  '::/127', // unspecified and loopback
  '64:ff9b::/96', // NAT64: reaches IPv4 (checked as such below, but refused outright as well)
  '64:ff9b:1::/48',
  '100::/64',
  '2001::/23',
  '2001:db8::/32',
  '2002::/16', // 6to4 embeds an IPv4 address
  'fc00::/7', // unique local
  'fe80::/10', // link local
  'fec0::/10',
  'ff00::/8', // multicast
];

function blockListOf(v4: string[], v6: string[]): BlockList {
  const list = new BlockList();
  for (const cidr of v4) list.addSubnet(cidr.split('/')[0], Number(cidr.split('/')[1]), 'ipv4');
  for (const cidr of v6) list.addSubnet(cidr.split('/')[0], Number(cidr.split('/')[1]), 'ipv6');
  return list;
}

const SPECIAL = blockListOf(SPECIAL_V4, SPECIAL_V6);

/** `a.b.c.d/n` or `x::/n`, as `WEBHOOK_ALLOW_ADDRESSES` lists them; null when it is not one. */
function parseRange(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m) return null;
  const version = isIP(m[1]);
  const prefix = Number(m[2]);
  if (version === 0 || prefix > (version === 4 ? 32 : 128)) return null;
  return { address: m[1], prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** The operator's allowed ranges (comma-separated CIDRs), or the entries that are not ranges. */
export function parseAllowedRanges(text: string): { ranges: string[] } | { invalid: string[] } {
  const entries = text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  const invalid = entries.filter((e) => parseRange(e) === null);
  return invalid.length ? { invalid } : { ranges: entries };
}

/** Why a target is refused (the message keys `webhook_url_<reason>`). */
export type TargetRefusal = 'scheme' | 'address' | 'unresolved';

export class TargetRefused extends Error {
  constructor(
    readonly reason: TargetRefusal,
    readonly address?: string,
  ) {
    super(`webhook target refused (${reason}${address ? `: ${address}` : ''})`);
    this.name = 'TargetRefused';
  }
}

export type Resolve = (host: string) => Promise<LookupAddress[]>;

/** The system resolver: every address of a name (a literal address resolves to itself). */
export const systemResolve: Resolve = (host) => lookup(host, { all: true, verbatim: true });

export interface TargetRules {
  allowHttp: boolean;
  allowedRanges: string[];
}

export class WebhookTargets {
  private readonly allowed: BlockList;

  constructor(
    private readonly rules: TargetRules,
    private readonly resolve: Resolve = systemResolve,
  ) {
    this.allowed = new BlockList();
    for (const r of rules.allowedRanges) {
      const range = parseRange(r);
      if (range) this.allowed.addSubnet(range.address, range.prefix, range.family);
    }
  }

  /** Whether a connection to `address` may be made. */
  addressAllowed(address: string): boolean {
    const version = isIP(address);
    if (version === 0) return false;
    const family = version === 4 ? 'ipv4' : 'ipv6';
    if (this.allowed.check(address, family)) return true;
    // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address it is.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return this.addressAllowed(mapped[1]);
    if (family === 'ipv6' && /^::ffff:/i.test(address)) return false;
    return !SPECIAL.check(address, family);
  }

  /** The URL's scheme is allowed here (syntax is the DTO's). */
  schemeAllowed(url: URL): boolean {
    return url.protocol === 'https:' || (url.protocol === 'http:' && this.rules.allowHttp);
  }

  /** Throws TargetRefused unless the URL's scheme and every address its host resolves to are allowed. */
  async check(url: URL): Promise<LookupAddress[]> {
    if (!this.schemeAllowed(url)) throw new TargetRefused('scheme');
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    let addresses: LookupAddress[];
    try {
      addresses = await this.resolve(host);
    } catch {
      throw new TargetRefused('unresolved');
    }
    if (addresses.length === 0) throw new TargetRefused('unresolved');
    const refused = addresses.find((a) => !this.addressAllowed(a.address));
    if (refused) throw new TargetRefused('address', refused.address);
    return addresses;
  }

  /**
   * A `lookup` for http(s).request: it resolves, refuses when any address is not allowed, and hands the
   * socket only the addresses it checked.
   */
  guardedLookup() {
    return (
      hostname: string,
      options: { all?: boolean },
      callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
    ): void => {
      const host = hostname.replace(/^\[(.*)\]$/, '$1');
      this.resolve(host).then(
        (addresses) => {
          const refused = addresses.find((a) => !this.addressAllowed(a.address));
          if (addresses.length === 0) return callback(new TargetRefused('unresolved'), '');
          if (refused) return callback(new TargetRefused('address', refused.address), '');
          if (options.all) return callback(null, addresses);
          callback(null, addresses[0].address, addresses[0].family);
        },
        () => callback(new TargetRefused('unresolved'), ''),
      );
    };
  }
}
