import { IsIn, IsInt, IsOptional, IsString, Length, Matches, Max, Min } from 'class-validator';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { MAX_ID } from '../../common/ids';

export const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

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
  @Matches(SERVER_NAME, { message: 'name must be 1-64 letters, digits, ".", "_" or "-"' })
  @ApiProperty({ pattern: SERVER_NAME.source, example: 'web-server-01' })
  name!: string;

  /** libvirt domain name on the node. */
  @IsString()
  @Length(1, 255)
  @Matches(/^[A-Za-z0-9][A-Za-z0-9._+-]*$/, { message: 'domain must be a libvirt domain name' })
  @ApiProperty({
    minLength: 1,
    maxLength: 255,
    example: 'web-server-01',
    description: 'libvirt domain name on the node.',
  })
  domain!: string;

  @IsString()
  @Length(2, 1024)
  @Matches(/^\/[^\0]*$/, { message: 'disk_path must be an absolute path' })
  @ApiProperty({
    minLength: 2,
    maxLength: 1024,
    example: '/var/lib/libvirt/images/web-server-01.qcow2',
    description: 'Absolute path of its disk image.',
  })
  disk_path!: string;

  @IsOptional()
  @IsIn(['running', 'stopped'])
  @ApiPropertyOptional({ enum: ['running', 'stopped'], default: 'running' })
  status?: 'running' | 'stopped';
}
