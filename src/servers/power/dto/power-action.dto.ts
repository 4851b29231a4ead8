import { ApiProperty } from '@nestjs/swagger';
import { IsIn } from 'class-validator';
import { POWER_ACTION_TYPES, PowerActionType } from '../power-actions';

export class PowerActionDto {
  @IsIn(POWER_ACTION_TYPES, {
    message: `type must be one of ${POWER_ACTION_TYPES.map((t) => `"${t}"`).join(', ')}`,
  })
  @ApiProperty({
    enum: POWER_ACTION_TYPES,
    enumName: 'PowerActionType',
    example: 'shutdown',
    description:
      '`start` powers the server on; `stop` powers it off at once (unsaved guest data may be lost); ' +
      '`shutdown` asks its operating system to shut down and fails `shutdown_timeout` if it is still ' +
      'running after the grace period; `reboot` is a graceful shutdown then a start. Starting a running ' +
      'server, or stopping a stopped one, succeeds and does nothing.',
  })
  type!: PowerActionType;
}
