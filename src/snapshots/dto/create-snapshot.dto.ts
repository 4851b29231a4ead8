import { IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { MAX_ID } from '../../common/ids';

export const SNAPSHOT_NAME = /^[A-Za-z0-9_-]{1,64}$/;
export const DESCRIPTION_MAX = 1000;

export class CreateSnapshotDto {
  @IsInt({ message: 'server_id must be an integer' })
  @Min(1, { message: 'server_id must be a positive integer' })
  @Max(MAX_ID, { message: `server_id must not exceed ${MAX_ID}` })
  server_id!: number;

  @IsString({ message: 'name must be a string' })
  @Matches(SNAPSHOT_NAME, { message: 'name must be 1-64 letters, digits, hyphens or underscores' })
  name!: string;

  @IsOptional()
  @IsString({ message: 'description must be a string' })
  @MaxLength(DESCRIPTION_MAX, { message: `description must be at most ${DESCRIPTION_MAX} characters` })
  description?: string;
}
