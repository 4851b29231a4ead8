import { XMLBuilder, XMLParser } from 'fast-xml-parser';

import { hvError } from '../driver-errors';

/**
 * The domain XML libvirt writes (`virsh dumpxml`), read with a real XML parser, and the backup XML
 * this driver gives `virsh backup-begin`, written with its builder (which escapes attribute values).
 * Only a disk's own children are read: the <source> inside a nested <backingStore> or <mirror> is
 * another image's, never this disk's.
 */

export interface DomainDisk {
  /** `type` attribute of <disk>: file, block, network, volume, ... */
  readonly type: string;
  /** `device` attribute: disk, cdrom, floppy, lun. */
  readonly device: string;
  /** <source file=…> (type file) or <source dev=…> (type block); null when absent (e.g. empty cdrom). */
  readonly source: string | null;
  /** <driver type=…>: qcow2, raw, ...; null when absent. */
  readonly format: string | null;
  /** <target dev=…>: vda, sda, ...; null when absent. */
  readonly target: string | null;
}

type XmlNode = Record<string, unknown>;

const ATTR = '@_';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  // Values stay strings (a disk named `0x1` is not a number), entities are decoded.
  parseAttributeValue: false,
  parseTagValue: false,
  // Numeric character references (&#38;, &#x26;) are XML too; the option's name is historical.
  htmlEntities: true,
  // A domain has one <devices>; a disk one <source>, <driver>, <target>: only <disk> repeats.
  isArray: (name, jpath) => jpath === 'domain.devices.disk',
});

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  suppressEmptyNode: true,
  format: true,
});

function child(node: unknown, name: string): XmlNode | null {
  if (!node || typeof node !== 'object') return null;
  const value = (node as XmlNode)[name];
  // `<source/>` parses to '' (an element without attributes or content).
  if (value === '') return {};
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as XmlNode) : null;
}

function attr(node: XmlNode | null, name: string): string | null {
  const value = node?.[`${ATTR}${name}`];
  return typeof value === 'string' ? value : null;
}

/** Every <disk> of the domain's <devices>, in document order. */
export function parseDomainDisks(xml: string): DomainDisk[] {
  let doc: XmlNode;
  try {
    doc = parser.parse(xml) as XmlNode;
  } catch (e) {
    throw hvError('hypervisor_error', `unreadable domain XML: ${(e as Error).message}`);
  }
  const devices = child(child(doc, 'domain'), 'devices');
  const disks = (devices?.disk as unknown[] | undefined) ?? [];
  return disks.map((d) => {
    const disk = d === '' ? {} : (d as XmlNode);
    const source = child(disk, 'source');
    return {
      type: attr(disk, 'type') ?? 'file',
      device: attr(disk, 'device') ?? 'disk',
      source: attr(source, 'file') ?? attr(source, 'dev'),
      format: attr(child(disk, 'driver'), 'type'),
      target: attr(child(disk, 'target'), 'dev'),
    };
  });
}

/**
 * The push-mode backup XML of a backup of the disk `target` into the qcow2 file `file`, every other
 * disk of `targets` left out of the backup: full, or only what changed since checkpoint `incremental`.
 */
export function pushBackupXml(
  targets: readonly string[],
  target: string,
  file: string,
  incremental: string | null = null,
): string {
  const disk = (name: string): XmlNode =>
    name === target
      ? {
          [`${ATTR}name`]: name,
          [`${ATTR}type`]: 'file',
          target: { [`${ATTR}file`]: file },
          driver: { [`${ATTR}type`]: 'qcow2' },
        }
      : { [`${ATTR}name`]: name, [`${ATTR}backup`]: 'no' };
  return builder.build({
    domainbackup: {
      [`${ATTR}mode`]: 'push',
      ...(incremental === null ? {} : { incremental }),
      disks: { disk: targets.map(disk) },
    },
  }) as string;
}

/**
 * The XML of checkpoint `name` on the disk `target` (every other disk of `targets` left out): for
 * `backup-begin`, or — with the bitmap `qemu-img bitmap --add` made and its time — for
 * `checkpoint-create --redefine`.
 */
export function checkpointXml(
  targets: readonly string[],
  target: string,
  name: string,
  redefine: { readonly parent: string | null; readonly creationTime: number } | null = null,
): string {
  const disk = (dev: string): XmlNode =>
    dev === target
      ? {
          [`${ATTR}name`]: dev,
          [`${ATTR}checkpoint`]: 'bitmap',
          ...(redefine ? { [`${ATTR}bitmap`]: name } : {}),
        }
      : { [`${ATTR}name`]: dev, [`${ATTR}checkpoint`]: 'no' };
  return builder.build({
    domaincheckpoint: {
      name,
      ...(redefine?.parent ? { parent: { name: redefine.parent } } : {}),
      ...(redefine ? { creationTime: String(redefine.creationTime) } : {}),
      disks: { disk: targets.map(disk) },
    },
  }) as string;
}
