/** What the webhook endpoints answer: response classes (the OpenAPI document's source) and their builders. */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';
import { apiTime } from '../common/clock';
import { PageOf } from '../common/pagination';
import { DATE_TIME, ID } from '../openapi/properties';
import { EVENT_TYPES } from './event-types';

export interface WebhookRow {
  id: number;
  url: string;
  eventTypes: string[];
  secretPrefix: string;
  createdAt: Date;
  failingSince: Date | null;
  lastError: string | null;
  disabledAt: Date | null;
  disabledReason: string | null;
}

@ApiSchema({ name: 'Webhook', description: 'An endpoint that receives your events (never its secret).' })
export class WebhookView {
  @ApiProperty({ ...ID, example: 7 })
  id!: number;

  @ApiProperty({ format: 'uri', example: 'https://hooks.example.com/vps' })
  url!: string;

  @ApiProperty({
    enum: EVENT_TYPES,
    enumName: 'EventType',
    isArray: true,
    example: ['backup.failed'],
    description: 'The types it receives; empty: every type.',
  })
  event_types!: string[];

  @ApiProperty({
    example: 'whsec_AbCdEf',
    description: 'The first characters of its secret, to recognise it.',
  })
  secret_prefix!: string;

  @ApiProperty({
    enum: ['enabled', 'disabled'],
    example: 'enabled',
    description: '`disabled` once every delivery has failed for the whole retry window (3 days).',
  })
  status!: 'enabled' | 'disabled';

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({
    ...DATE_TIME,
    nullable: true,
    example: null,
    description: 'The first failed attempt since the last delivery that succeeded.',
  })
  failing_since!: string | null;

  @ApiProperty({
    type: String,
    nullable: true,
    example: null,
    description: 'Why the last attempt failed (e.g. `HTTP 500`).',
  })
  last_error!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true, example: null })
  disabled_at!: string | null;

  @ApiProperty({ type: String, nullable: true, example: null, description: 'Why it was disabled.' })
  disabled_reason!: string | null;
}

@ApiSchema({
  name: 'WebhookCreated',
  description: 'A new webhook, with its signing secret (shown this once only).',
})
export class WebhookCreatedView extends WebhookView {
  @ApiProperty({
    example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    description:
      '`whsec_` and base64 of 32 bytes: verify each delivery’s `webhook-signature` with it (Standard ' +
      'Webhooks). Store it now: it is never shown again.',
  })
  secret!: string;
}

export const WebhookPage = PageOf(WebhookView, {
  description: 'The account’s webhooks (one page holds them all).',
});

export function webhookView(w: WebhookRow): WebhookView {
  return {
    id: w.id,
    url: w.url,
    event_types: w.eventTypes,
    secret_prefix: w.secretPrefix,
    status: w.disabledAt ? 'disabled' : 'enabled',
    created_at: apiTime(w.createdAt),
    failing_since: apiTime(w.failingSince),
    last_error: w.lastError,
    disabled_at: apiTime(w.disabledAt),
    disabled_reason: w.disabledReason,
  };
}

export function webhookCreatedView(w: WebhookRow, secret: string): WebhookCreatedView {
  return { ...webhookView(w), secret };
}

/** What the audit log records of a new webhook: where it sends, what. */
export function webhookAuditDetail(view: Pick<WebhookView, 'url' | 'event_types'>) {
  return { url: view.url, event_types: view.event_types };
}
