import { IsInt, IsString, Matches, Max, Min, ValidateIf } from 'class-validator';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { MAX_ID } from '../../common/ids';

export const SNAPSHOT_NAME_MAX = 64;
export const SNAPSHOT_NAME = new RegExp(`^[A-Za-z0-9_-]{1,${SNAPSHOT_NAME_MAX}}$`);
export const SNAPSHOT_NAME_MESSAGE = `name must be 1-${SNAPSHOT_NAME_MAX} letters, digits, hyphens or underscores`;
export const DESCRIPTION_MAX = 1000;

export class CreateSnapshotDto {
  @IsInt({ message: 'server_id must be an integer' })
  @Min(1, { message: 'server_id must be a positive integer' })
  @Max(MAX_ID, { message: `server_id must not exceed ${MAX_ID}` })
  @ApiProperty({
    type: 'integer',
    format: 'int32',
    minimum: 1,
    maximum: MAX_ID,
    example: 12345,
    description: 'Id of the server to snapshot.',
  })
  server_id!: number;

  @IsString({ message: 'name must be a string' })
  @Matches(SNAPSHOT_NAME, { message: SNAPSHOT_NAME_MESSAGE })
  @ApiProperty({
    pattern: SNAPSHOT_NAME.source,
    minLength: 1,
    maxLength: SNAPSHOT_NAME_MAX,
    example: 'before-update-snapshot',
    description: 'Name for the snapshot (letters, digits, hyphens, underscores; need not be unique).',
  })
  name!: string;

  // Only an absent description is "none": null is a wrong type, as is any other non-string.
  @ValidateIf((o: CreateSnapshotDto) => o.description !== undefined)
  @IsString({ message: 'description must be a string' })
  // PostgreSQL text cannot hold NUL.
  // eslint-disable-next-line no-control-regex
  @Matches(/^[^\u0000]*$/, { message: 'description must not contain NUL characters' })
  // Characters are code points, as PostgreSQL counts them (MaxLength would not count U+FE0F).
  @Matches(new RegExp(`^[\\s\\S]{0,${DESCRIPTION_MAX}}$`, 'u'), {
    message: `description must be at most ${DESCRIPTION_MAX} characters`,
  })
  @ApiPropertyOptional({
    maxLength: DESCRIPTION_MAX,
    example: 'Snapshot before system update',
    description: 'Optional description (omitted = "").',
  })
  description?: string;
}
