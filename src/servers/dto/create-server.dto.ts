import { IsIn, IsInt, IsOptional, IsString, Length, Matches, Max, Min } from 'class-validator';
import { MAX_ID } from '../../common/ids';

export const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class CreateServerDto {
  @IsInt()
  @Min(1)
  @Max(MAX_ID)
  account_id!: number;

  @IsInt()
  @Min(1)
  @Max(MAX_ID)
  node_id!: number;

  @IsString()
  @Matches(SERVER_NAME, { message: 'name must be 1-64 letters, digits, ".", "_" or "-"' })
  name!: string;

  /** libvirt domain name on the node. */
  @IsString()
  @Length(1, 255)
  @Matches(/^[A-Za-z0-9][A-Za-z0-9._+-]*$/, { message: 'domain must be a libvirt domain name' })
  domain!: string;

  @IsString()
  @Length(2, 1024)
  @Matches(/^\/[^\0]*$/, { message: 'disk_path must be an absolute path' })
  disk_path!: string;

  @IsOptional()
  @IsIn(['running', 'stopped'])
  status?: 'running' | 'stopped';
}
