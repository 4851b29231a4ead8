import { IsIn, IsOptional, IsString, Matches } from 'class-validator';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { SatisfiesRule } from '../../common/rule-validator';
import {
  DEFAULT_IMAGE_ROOTS,
  hostPathProblem,
  imageRootsProblems,
  MAX_HOST_PATH_LENGTH,
  MAX_IMAGE_ROOTS,
} from '../../hypervisor/host-paths';
import {
  LIBVIRT_URI_FORMS,
  libvirtUriProblem,
  MAX_LIBVIRT_URI_LENGTH,
} from '../../hypervisor/libvirt/connection-uri';
import { BACKUP_STORE_NAME, DEFAULT_BACKUP_STORE } from '../../config/backup-stores';

export const NODE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const NODE_NAME_MESSAGE = 'name must be 1-63 of a-z, 0-9 and "-", starting with a letter or digit';

export const DEFAULT_NODE_URI = 'qemu:///system';
export const BACKUP_STORE_NAME_MESSAGE = 'backup_store must be 1-63 of a-z, 0-9 and "-"';

/** `backup_store`: the name's form here; whether the configuration has it, in NodesService. */
const BackupStoreName = (required: boolean) => (target: object, key: string) => {
  SatisfiesRule((v) =>
    typeof v === 'string' && BACKUP_STORE_NAME.test(v) ? null : BACKUP_STORE_NAME_MESSAGE,
  )(target, key);
  const doc = {
    pattern: BACKUP_STORE_NAME.source,
    example: DEFAULT_BACKUP_STORE,
    description:
      "The configured backup store (by name: BACKUP_DIR is `default`, BACKUP_STORES the others) this node's backups go to.",
  };
  if (required) ApiProperty(doc)(target, key);
  else ApiPropertyOptional({ ...doc, default: DEFAULT_BACKUP_STORE })(target, key);
};

const text = (rule: (v: string) => string | null, what: string) => (v: unknown) =>
  typeof v === 'string' ? rule(v) : `${what} must be a string`;

export class CreateNodeDto {
  @IsString()
  @Matches(NODE_NAME, { message: NODE_NAME_MESSAGE })
  @ApiProperty({ pattern: NODE_NAME.source, example: 'hv1', description: 'Workers name it in WORKER_NODE.' })
  name!: string;

  @IsIn(['libvirt', 'fake'])
  @ApiProperty({ enum: ['libvirt', 'fake'], example: 'libvirt' })
  driver!: 'libvirt' | 'fake';

  @IsOptional()
  @SatisfiesRule(text(libvirtUriProblem, 'uri'))
  @ApiPropertyOptional({
    maxLength: MAX_LIBVIRT_URI_LENGTH,
    default: DEFAULT_NODE_URI,
    description: `libvirt connection URI, one of: ${LIBVIRT_URI_FORMS.join(', ')} (or /session); no query parameters.`,
  })
  uri?: string;

  @SatisfiesRule(text((v) => hostPathProblem(v, 'snapshot_dir'), 'snapshot_dir'))
  @ApiProperty({
    maxLength: MAX_HOST_PATH_LENGTH,
    example: '/var/lib/vps/snapshots',
    description:
      'Absolute directory for snapshot files on the node, in normal form (no "..", "//" or trailing "/"), apart from every image root.',
  })
  snapshot_dir!: string;

  @IsOptional()
  @SatisfiesRule((v) =>
    Array.isArray(v) && v.every((root) => typeof root === 'string')
      ? (imageRootsProblems(v)[0] ?? null)
      : 'image_roots must be an array of absolute directories',
  )
  @ApiPropertyOptional({
    type: [String],
    minItems: 1,
    maxItems: MAX_IMAGE_ROOTS,
    default: DEFAULT_IMAGE_ROOTS,
    example: ['/var/lib/libvirt/images'],
    description:
      "Absolute directories the node's disks may live in (normal form); every server's disk_path must lie inside one.",
  })
  image_roots?: string[];

  @IsOptional()
  @BackupStoreName(false)
  backup_store?: string;
}

export class UpdateNodeDto {
  @BackupStoreName(true)
  backup_store!: string;
}
