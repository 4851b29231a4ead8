import { IsIn, IsOptional, IsString, Length, Matches } from 'class-validator';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

export const NODE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export class CreateNodeDto {
  @IsString()
  @Matches(NODE_NAME, { message: 'name must be 1-63 of a-z, 0-9 and "-", starting with a letter or digit' })
  @ApiProperty({ pattern: NODE_NAME.source, example: 'hv1', description: 'Workers name it in WORKER_NODE.' })
  name!: string;

  @IsIn(['libvirt', 'fake'])
  @ApiProperty({ enum: ['libvirt', 'fake'], example: 'libvirt' })
  driver!: 'libvirt' | 'fake';

  @IsOptional()
  @IsString()
  @Length(1, 255)
  @Matches(/^[a-z0-9+]+:\/\/[^\s]*$/, {
    message: 'uri must be a libvirt connection URI such as qemu:///system',
  })
  @ApiPropertyOptional({ maxLength: 255, default: 'qemu:///system', description: 'libvirt connection URI.' })
  uri?: string;

  @IsString()
  @Length(1, 1024)
  @Matches(/^\/[^\0]*$/, { message: 'snapshot_dir must be an absolute path' })
  @ApiProperty({
    maxLength: 1024,
    example: '/var/lib/vps/snapshots',
    description: 'Absolute directory for snapshot files on the node.',
  })
  snapshot_dir!: string;
}
