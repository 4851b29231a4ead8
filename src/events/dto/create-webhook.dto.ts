import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayUnique, IsArray, IsIn, IsOptional, IsString, IsUrl, MaxLength } from 'class-validator';
import { EVENT_TYPES, EventType } from '../event-types';

export const WEBHOOK_URL_MAX = 2048;

export class CreateWebhookDto {
  @IsString()
  @MaxLength(WEBHOOK_URL_MAX)
  @IsUrl(
    { protocols: ['https', 'http'], require_protocol: true, require_tld: false, allow_underscores: true },
    { message: 'url must be an absolute https URL' },
  )
  @ApiProperty({
    format: 'uri',
    maxLength: WEBHOOK_URL_MAX,
    example: 'https://hooks.example.com/vps',
    description:
      'Where events are POSTed: https, reaching a public address (checked after DNS resolution, and ' +
      'again at every connection).',
  })
  url!: string;

  @IsOptional()
  @IsArray()
  @ArrayUnique()
  @IsIn(EVENT_TYPES, { each: true })
  @ApiPropertyOptional({
    enum: EVENT_TYPES,
    enumName: 'EventType',
    isArray: true,
    uniqueItems: true,
    example: ['backup.failed', 'backup.corrupt'],
    description: 'The event types to send; omitted or empty: every type.',
  })
  event_types?: EventType[];
}
