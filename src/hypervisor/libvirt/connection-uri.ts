/**
 * The libvirt connection URIs a node may have: the forms the driver is built for, and nothing that
 * makes virsh run a program or open a file named in the URI. libvirt's `ext` transport runs the
 * program its `command` parameter names; other query parameters name programs run over ssh
 * (`netcat`), local sockets and files (`socket`, `keyfile`, `pkipath`, `known_hosts`) or turn checks off
 * (`no_verify`). So transports are an allow-list and no query string or fragment is accepted at all:
 * per-host ssh settings belong in the worker's own ssh configuration (`~/.ssh/config`), not in a URI.
 */

/** The accepted forms, as the error message and the documentation show them. */
export const LIBVIRT_URI_FORMS: readonly string[] = [
  'qemu:///system',
  'qemu:///session',
  'qemu+ssh://[user@]host[:port]/system',
  'qemu+tls://host[:port]/system',
];

export const MAX_LIBVIRT_URI_LENGTH = 255;

const LOCAL = /^qemu:\/\/\/(?:system|session)$/;
/** `qemu+ssh` or `qemu+tls`, an optional user (ssh only), a host, an optional port, system or session. */
const REMOTE =
  /^qemu\+(ssh|tls):\/\/(?:([A-Za-z_][A-Za-z0-9_.-]{0,31})@)?([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::([0-9]{1,5}))?\/(?:system|session)$/;
/** One DNS label: letters, digits and inner hyphens (so never an option such as `-oProxyCommand`). */
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export const LIBVIRT_URI_MESSAGE = `uri must be one of ${LIBVIRT_URI_FORMS.join(', ')} (session instead of system also), without query parameters`;

/** Why `uri` is not a connection URI this service accepts (null when it is). */
export function libvirtUriProblem(uri: string): string | null {
  if (uri.length === 0 || uri.length > MAX_LIBVIRT_URI_LENGTH) return LIBVIRT_URI_MESSAGE;
  if (LOCAL.test(uri)) return null;
  const m = REMOTE.exec(uri);
  if (!m) return LIBVIRT_URI_MESSAGE;
  const [, transport, user, host, port] = m;
  if (transport === 'tls' && user !== undefined) return LIBVIRT_URI_MESSAGE;
  if (!host.startsWith('[') && !host.split('.').every((label) => LABEL.test(label)))
    return LIBVIRT_URI_MESSAGE;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return LIBVIRT_URI_MESSAGE;
  return null;
}
