import { IsIn, IsOptional, IsString, Length, Matches } from 'class-validator';

export const NODE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export class CreateNodeDto {
  @IsString()
  @Matches(NODE_NAME, { message: 'name must be 1-63 of a-z, 0-9 and "-", starting with a letter or digit' })
  name!: string;

  @IsIn(['libvirt', 'fake'])
  driver!: 'libvirt' | 'fake';

  @IsOptional()
  @IsString()
  @Length(1, 255)
  @Matches(/^[a-z0-9+]+:\/\/[^\s]*$/, {
    message: 'uri must be a libvirt connection URI such as qemu:///system',
  })
  uri?: string;

  @IsString()
  @Length(1, 1024)
  @Matches(/^\/[^\0]*$/, { message: 'snapshot_dir must be an absolute path' })
  snapshot_dir!: string;
}
