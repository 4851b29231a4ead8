import { IsIn, IsInt, IsOptional, IsString, Matches, Max, Min } from 'class-validator';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { MAX_ID } from '../../common/ids';
import { SatisfiesRule } from '../../common/rule-validator';
import { hostPathProblem, MAX_HOST_PATH_LENGTH } from '../../hypervisor/host-paths';
import {
  canonicalDomainUuid,
  DOMAIN_NAME,
  DOMAIN_UUID_MESSAGE,
  domainNameProblem,
} from '../../hypervisor/libvirt/domain-identity';

export const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SERVER_NAME_MESSAGE = 'name must be 1-64 letters, digits, ".", "_" or "-"';

export class CreateServerDto {
  @IsInt()
  @Min(1)
  @Max(MAX_ID)
  @ApiProperty({
    type: 'integer',
    minimum: 1,
    maximum: MAX_ID,
    example: 7,
    description: 'The owning account.',
  })
  account_id!: number;

  @IsInt()
  @Min(1)
  @Max(MAX_ID)
  @ApiProperty({
    type: 'integer',
    minimum: 1,
    maximum: MAX_ID,
    example: 1,
    description: 'The hypervisor node that holds it.',
  })
  node_id!: number;

  @IsString()
  @Matches(SERVER_NAME, { message: SERVER_NAME_MESSAGE })
  @ApiProperty({ pattern: SERVER_NAME.source, example: 'web-server-01' })
  name!: string;

  /** libvirt domain name on the node. */
  @SatisfiesRule((v) => (typeof v === 'string' ? domainNameProblem(v) : 'domain must be a string'))
  @ApiProperty({
    minLength: 1,
    maxLength: 255,
    pattern: DOMAIN_NAME.source,
    example: 'web-server-01',
    description:
      "libvirt domain name on the node; not all digits nor UUID-shaped (virsh would read those as another domain's id or UUID).",
  })
  domain!: string;

  @IsOptional()
  @SatisfiesRule((v) =>
    typeof v === 'string' && canonicalDomainUuid(v) !== null ? null : DOMAIN_UUID_MESSAGE,
  )
  @ApiPropertyOptional({
    format: 'uuid',
    example: '4dea22b3-1d52-d8f3-2516-782e98ab3fa0',
    description:
      "The domain's libvirt UUID (`virsh domuuid`). Without it the worker looks the domain up by its exact name before the server's first operation and records its UUID; either way every operation checks that the domain with this UUID still has this name.",
  })
  domain_uuid?: string;

  @SatisfiesRule((v) =>
    typeof v === 'string' ? hostPathProblem(v, 'disk_path') : 'disk_path must be a string',
  )
  @ApiProperty({
    minLength: 2,
    maxLength: MAX_HOST_PATH_LENGTH,
    example: '/var/lib/libvirt/images/web-server-01.qcow2',
    description:
      "Absolute path of its disk image in normal form, inside one of the node's image_roots; no other server of the node may have it.",
  })
  disk_path!: string;

  @IsOptional()
  @IsIn(['running', 'stopped'])
  @ApiPropertyOptional({ enum: ['running', 'stopped'], default: 'running' })
  status?: 'running' | 'stopped';
}
