import { Module } from '@nestjs/common';
import { ActionReads } from '../actions/action-reads';
import { EventBodies } from './event-bodies';
import { EventRetention } from './event-retention';
import { EventsController, WebhooksController } from './events.controller';
import { EventsService } from './events.service';
import { webhookTargetsProvider } from './webhook-targets.provider';
import { WebhooksService } from './webhooks.service';

/**
 * The API's share: webhook endpoints, the events list and its retention. The sender is WebhookSenderModule.
 */
@Module({
  controllers: [WebhooksController, EventsController],
  providers: [
    WebhooksService,
    EventsService,
    EventBodies,
    ActionReads,
    webhookTargetsProvider,
    EventRetention,
  ],
  exports: [EventRetention],
})
export class EventsModule {}
