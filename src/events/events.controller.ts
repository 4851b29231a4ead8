import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Post,
  Query,
  Req,
  UseInterceptors,
} from '@nestjs/common';
import type { Request } from 'express';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { CurrentPrincipal } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { PathIdPipe } from '../common/ids';
import { wholePage } from '../common/pagination';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CreateWebhookDto } from './dto/create-webhook.dto';
import { EventListQuery } from './event.view';
import { EventsService } from './events.service';
import { webhookAuditDetail, webhookCreatedView, webhookView } from './webhook.view';
import { WebhooksService } from './webhooks.service';

const WebhookId = () => new PathIdPipe('webhook_not_found');

/** The account's webhook endpoints. */
@ApiDocs.webhooks()
@Controller('api/v1/webhooks')
@UseInterceptors(AuditInterceptor)
export class WebhooksController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Get()
  @ApiDoc.webhooks.list()
  async list(@CurrentPrincipal() me: Principal) {
    return wholePage((await this.webhooks.list(me.accountId)).map(webhookView));
  }

  @Get(':id')
  @ApiDoc.webhooks.get()
  async get(@CurrentPrincipal() me: Principal, @Param('id', WebhookId()) id: number) {
    return webhookView(await this.webhooks.get(me.accountId, id));
  }

  @Post()
  @ApiDoc.webhooks.create()
  @Audit('webhook.create', 'webhook', { detailOf: webhookAuditDetail })
  async create(@CurrentPrincipal() me: Principal, @Body() dto: CreateWebhookDto) {
    const { webhook, secret } = await this.webhooks.create(me.accountId, {
      url: dto.url,
      eventTypes: dto.event_types ?? [],
    });
    return webhookCreatedView(webhook, secret);
  }

  @Delete(':id')
  @ApiDoc.webhooks.delete()
  @HttpCode(204)
  @Audit('webhook.delete', 'webhook')
  async delete(@CurrentPrincipal() me: Principal, @Param('id', WebhookId()) id: number) {
    await this.webhooks.delete(me.accountId, id);
  }
}

/** The account's events, for clients that poll instead of (or as well as) receiving webhooks. */
@ApiDocs.events()
@Controller('api/v1/events')
export class EventsController {
  constructor(private readonly events: EventsService) {}

  @Get()
  @ApiDoc.events.list()
  async list(@CurrentPrincipal() me: Principal, @Req() req: Request, @Query() query: EventListQuery) {
    const { events, more } = await this.events.after(me.accountId, query.since ?? 0, query.page_size);
    const last = events.at(-1);
    let next: string | null = null;
    if (more && last) {
      const url = new URL(req.originalUrl, `${req.protocol}://${req.get('host') ?? 'localhost'}`);
      url.searchParams.set('since', String(last.id));
      next = url.toString();
    }
    return { count: events.length, next, previous: null, results: events };
  }
}
