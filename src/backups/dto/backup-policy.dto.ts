import { applyDecorators } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { SatisfiesRule } from '../../common/rule-validator';
import { Type } from 'class-transformer';
import { IsBoolean, IsDefined, IsIn, IsObject, ValidateIf, ValidateNested } from 'class-validator';

/** Most backups of each retention class one policy may keep. */
export const RETENTION_MAX = 100;

/** An integer field from `min` to `max`, with one message naming its whole path. */
function IntField(
  field: string,
  min: number,
  max: number,
  example: number,
  description: string,
  nullable = false,
) {
  const problem = (v: unknown) =>
    Number.isInteger(v) && (v as number) >= min && (v as number) <= max
      ? null
      : `${field} must be an integer from ${min} to ${max}`;
  return applyDecorators(
    SatisfiesRule(problem),
    ApiProperty({ type: 'integer', minimum: min, maximum: max, example, description, nullable }),
  );
}

export class BackupScheduleDto {
  @IsIn(['daily', 'weekly'], { message: 'schedule.frequency must be "daily" or "weekly"' })
  @ApiProperty({ enum: ['daily', 'weekly'], example: 'daily' })
  frequency!: 'daily' | 'weekly';

  // Required by a weekly schedule; a daily one has none (absent or null).
  @ValidateIf(
    (o: BackupScheduleDto) => o.frequency === 'weekly' || (o.weekday !== undefined && o.weekday !== null),
  )
  @IntField(
    'schedule.weekday',
    0,
    6,
    0,
    'Day of a weekly backup: 0 = Sunday … 6 = Saturday; null for a daily schedule.',
    true,
  )
  weekday?: number | null;

  @IntField('schedule.hour', 0, 23, 2, 'UTC start of the 4-hour window the backup runs in.')
  hour!: number;
}

export class BackupRetentionDto {
  @IntField('retention.daily', 0, RETENTION_MAX, 7, 'Daily automatic backups kept.')
  daily!: number;

  @IntField('retention.weekly', 0, RETENTION_MAX, 4, 'Weekly automatic backups kept.')
  weekly!: number;

  @IntField('retention.monthly', 0, RETENTION_MAX, 0, 'Monthly automatic backups kept.')
  monthly!: number;
}

/** `PUT /api/v1/servers/{id}/backup-policy/`: the whole policy (every field is required). */
export class BackupPolicyDto {
  @IsBoolean({ message: 'enabled must be true or false' })
  @ApiProperty({ example: true })
  enabled!: boolean;

  @IsDefined({ message: 'schedule is required' })
  @IsObject({ message: 'schedule must be an object' })
  @ValidateNested()
  @Type(() => BackupScheduleDto)
  @ApiProperty({ type: BackupScheduleDto })
  schedule!: BackupScheduleDto;

  @IsDefined({ message: 'retention is required' })
  @IsObject({ message: 'retention must be an object' })
  @ValidateNested()
  @Type(() => BackupRetentionDto)
  @ApiProperty({ type: BackupRetentionDto })
  retention!: BackupRetentionDto;
}
