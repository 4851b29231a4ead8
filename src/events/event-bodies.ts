/**
 * An event's body, as webhooks deliver it and `GET /api/v1/events/` lists it: the Standard Webhooks
 * shape `{"type", "timestamp", "data"}`, `data` being the resource the event is about in the very
 * shape its own endpoint answers (snapshotView, backupView, actionView for a restore or a power action), or the event's
 * subject where no resource view applies or the resource is gone. A `*.protection_changed` event's
 * resource shows the protection that change set, whatever it is by the time the body is rendered.
 * Every event names the server it concerns (each subject holds its `server_id`), and `data.server`
 * carries that server's `labels` beside its id and name — added here, once for every kind of event, so
 * a receiver can route any event by the server's labels as a snapshot's or backup's own `labels`.
 *
 * The body is rendered once, the first time anyone needs it (normally the sender, within a poll of the
 * event), and stored (event_payloads): every retry, every endpoint and every listing then carries the
 * same bytes, so a receiver that dedupes on `webhook-id` sees one message, not two versions of it.
 */
import { Injectable } from '@nestjs/common';
import { ActionReads } from '../actions/action-reads';
import { actionView } from '../actions/action.view';
import { backupView, BACKUP_COLUMNS } from '../backups/backup.view';
import { Labels, labelsOf } from '../labels/labels';
import { PrismaService } from '../prisma/prisma.service';
import { snapshotView, SNAPSHOT_COLUMNS } from '../snapshots/snapshot.view';

export interface EventRow {
  id: bigint;
  accountId: number;
  type: string;
  subject: unknown;
  createdAt: Date;
}

export interface EventBody {
  type: string;
  timestamp: string;
  data: unknown;
}

type Subject = Partial<Record<'action_id' | 'snapshot_id' | 'backup_id' | 'server_id', number>> & {
  /** What a `*.protection_changed` event set: the resource may have changed again since. */
  protection?: { delete: boolean };
};

@Injectable()
export class EventBodies {
  constructor(
    private readonly prisma: PrismaService,
    private readonly actions: ActionReads,
  ) {}

  /** The stored body of each event (by id), rendering and storing those not yet rendered. */
  async of(events: EventRow[]): Promise<Map<bigint, string>> {
    const ids = events.map((e) => e.id);
    const bodies = await this.stored(ids);
    const missing = events.filter((e) => !bodies.has(e.id));
    if (missing.length) {
      const servers = await this.servers(missing);
      const rendered = await Promise.all(
        missing.map(async (e) => ({ eventId: e.id, body: JSON.stringify(await this.render(e, servers)) })),
      );
      // Two renderers racing keep the first body stored; both then read that one back.
      await this.prisma.eventPayload.createMany({ data: rendered, skipDuplicates: true });
      for (const [id, body] of await this.stored(missing.map((e) => e.id))) bodies.set(id, body);
    }
    return bodies;
  }

  private async stored(ids: bigint[]): Promise<Map<bigint, string>> {
    const rows = await this.prisma.eventPayload.findMany({ where: { eventId: { in: ids } } });
    return new Map(rows.map((r) => [r.eventId, r.body]));
  }

  /** The servers the events concern (their subjects' `server_id`), by id, in one query. */
  private async servers(events: EventRow[]): Promise<Map<number, EventServer>> {
    const ids = [...new Set(events.flatMap((e) => (e.subject as Subject | null)?.server_id ?? []))];
    if (!ids.length) return new Map();
    const rows = await this.prisma.server.findMany({
      where: { id: { in: ids } },
      select: { id: true, accountId: true, name: true, labels: true },
    });
    return new Map(rows.map((r) => [r.id, r]));
  }

  private async render(e: EventRow, servers: Map<number, EventServer>): Promise<EventBody> {
    const data = (await this.data(e)) ?? e.subject;
    const server = servers.get((e.subject as Subject | null)?.server_id ?? 0);
    return {
      type: e.type,
      timestamp: e.createdAt.toISOString(),
      data: server?.accountId === e.accountId ? withServer(data, server) : data,
    };
  }

  /** The resource an event is about, as its own endpoint shows it; null when none applies or it is gone. */
  private async data(e: EventRow): Promise<unknown> {
    const subject = (e.subject ?? {}) as Subject;
    const accountId = e.accountId;
    const kind = e.type.split('.')[0];
    if (kind === 'snapshot' && subject.snapshot_id) {
      const row = await this.prisma.snapshot.findFirst({
        where: { id: subject.snapshot_id, accountId },
        select: SNAPSHOT_COLUMNS,
      });
      return row && withProtection(snapshotView(row), subject);
    }
    if (kind === 'backup' && subject.backup_id) {
      const row = await this.prisma.backup.findFirst({
        where: { id: subject.backup_id, accountId },
        select: BACKUP_COLUMNS,
      });
      return row && withProtection(backupView(row), subject);
    }
    if ((kind === 'restore' || kind === 'power_action') && subject.action_id) {
      const row = await this.actions.byId(subject.action_id, accountId);
      return row && actionView(row);
    }
    return null;
  }
}

/** The view with the protection the event recorded, when it recorded one (a `*.protection_changed`). */
function withProtection<T extends { protection?: { delete: boolean } }>(view: T, subject: Subject): T {
  return subject.protection ? { ...view, protection: subject.protection } : view;
}

interface EventServer {
  id: number;
  accountId: number;
  name: string;
  /** As stored (a jsonb object). */
  labels: unknown;
}

/**
 * `data` with its `server` carrying the server's labels: the resource's own `server {id, name}` gains
 * `labels`; data without one (an event's bare subject) gains `server {id, name, labels}`.
 */
function withServer(data: unknown, server: EventServer): unknown {
  if (typeof data !== 'object' || data === null) return data;
  const labels: Labels = labelsOf(server.labels);
  const own = (data as { server?: { id?: number } }).server;
  if (own === undefined) return { ...data, server: { id: server.id, name: server.name, labels } };
  if (typeof own === 'object' && own !== null && own.id === server.id)
    return { ...data, server: { ...own, labels } };
  return data;
}
