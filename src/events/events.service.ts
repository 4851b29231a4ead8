import { Injectable } from '@nestjs/common';
import { PrismaService } from '../prisma/prisma.service';
import { EventBodies, EventBody } from './event-bodies';
import { EventView } from './event.view';

/** The account's events in order, after a cursor: what webhooks deliver, for clients that poll. */
@Injectable()
export class EventsService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly bodies: EventBodies,
  ) {}

  /** Up to `limit` events after `since`, oldest first, and whether more follow. */
  async after(
    accountId: number,
    since: number,
    limit: number,
  ): Promise<{ events: EventView[]; more: boolean }> {
    const rows = await this.prisma.event.findMany({
      where: { accountId, id: { gt: BigInt(since) } },
      orderBy: { id: 'asc' },
      take: limit + 1,
    });
    const page = rows.slice(0, limit);
    const bodies = await this.bodies.of(page);
    const events = page.map((e) => ({ id: Number(e.id), ...(JSON.parse(bodies.get(e.id)!) as EventBody) }));
    return { events, more: rows.length > limit };
  }
}
