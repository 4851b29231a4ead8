import { Module } from '@nestjs/common';
import { ActionReads } from '../actions/action-reads';
import { EventBodies } from './event-bodies';
import { webhookTargetsProvider } from './webhook-targets.provider';
import { NodeWebhookHttp, WebhookHttp } from './webhook-http';
import { WebhookSender } from './webhook-sender';

/** The `webhooks` process: delivers the outbox (webhook-sender.ts). */
@Module({
  providers: [
    EventBodies,
    ActionReads,
    webhookTargetsProvider,
    { provide: WebhookHttp, useClass: NodeWebhookHttp },
    WebhookSender,
  ],
  exports: [WebhookSender],
})
export class WebhookSenderModule {}
