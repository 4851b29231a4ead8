/** What `GET /api/v1/events/` answers: each event's delivered body (event-bodies.ts) with its id. */
import { ApiProperty, ApiSchema, PickType } from '@nestjs/swagger';
import { MAX_ID } from '../common/ids';
import { PageOf, PageQuery } from '../common/pagination';
import { QueryInteger } from '../common/query-params';
import { EVENT_TYPES } from './event-types';

@ApiSchema({
  name: 'Event',
  description:
    'Something that happened to your resources, exactly as webhooks deliver it (`type`, `timestamp`, ' +
    '`data`; the webhook-id header is `evt_<id>`).',
})
export class EventView {
  @ApiProperty({
    type: 'integer',
    format: 'int64',
    minimum: 1,
    example: 4021,
    description: 'Increasing: the cursor.',
  })
  id!: number;

  @ApiProperty({ enum: EVENT_TYPES, enumName: 'EventType', example: 'backup.completed' })
  type!: string;

  @ApiProperty({
    type: String,
    format: 'date-time',
    example: '2025-01-15T18:30:00.123Z',
    description: 'When it happened.',
  })
  timestamp!: string;

  @ApiProperty({
    type: 'object',
    additionalProperties: true,
    description:
      'The resource, as its own endpoint shows it, when the event was first delivered or listed: a ' +
      'Snapshot (`snapshot.*`), a Backup (`backup.*`), an Action (`restore.*`, `power_action.*`); ' +
      'otherwise the ids the event is about. A `*.protection_changed` event shows `protection` as that ' +
      'change set it. `server` is the server the event concerns with its `labels` ({id, name, labels}; ' +
      'added beside the ids when the data is a bare subject).',
  })
  data!: unknown;
}

export const EventPage = PageOf(EventView, {
  description:
    'Events after `since`, oldest first; `count` is the events in this page, `next` the URL of the ' +
    'page after it (null when there are no more yet: poll it again later with the last id).',
});

/** The query string of `GET /api/v1/events/`; any other parameter is ignored. */
export class EventListQuery extends PickType(PageQuery, ['page_size'] as const) {
  @QueryInteger({
    max: MAX_ID,
    message: 'since must be a positive integer (an event id)',
    description: 'Only events after this id (the last one you have). Omitted: from the first.',
    example: 4020,
  })
  since?: number;
}
