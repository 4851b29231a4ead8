import { Injectable } from '@nestjs/common';
import { PrismaService } from '../prisma/prisma.service';

/** Where an action stands among its account's open operations on its node. */
export interface AccountPlace {
  accountId: number;
  /** 1 = the account's oldest open (pending or running) operation on the node, 2 = the next, … */
  place: number;
}

/** BullMQ's highest priority number (its lowest priority). */
export const MAX_JOB_PRIORITY = 2_097_151;

/**
 * The job priority of an action: its place among its account's open operations on the node. A node
 * takes lower numbers first, so the first operation of a quiet account goes before the 50th of a busy
 * one and accounts take turns by construction; each account's own operations keep their order.
 */
export function jobPriorityOf(place: number): number {
  return Math.min(Math.max(1, place), MAX_JOB_PRIORITY);
}

/**
 * Counts each account's open operations per node, from the database (the one place they are counted).
 * Served by the partial index `actions_open_by_account` (open actions only): the cost is the account's
 * open operations, not the table.
 */
@Injectable()
export class OpenOperations {
  constructor(private readonly prisma: PrismaService) {}

  /** The account and place of each action found (missing ids are absent), in one statement. */
  async places(actionIds: number[]): Promise<Map<number, AccountPlace>> {
    const rows = await this.prisma.$queryRaw<{ id: number; account_id: number; place: number }[]>`
      SELECT a.id, a.account_id,
             (SELECT count(*)::int FROM actions b JOIN servers w ON w.id = b.server_id
              WHERE b.account_id = a.account_id AND b.status IN ('pending', 'running')
                AND b.id <= a.id AND w.node_id = v.node_id) AS place
      FROM actions a JOIN servers v ON v.id = a.server_id
      WHERE a.id = ANY(${actionIds}::int[])`;
    return new Map(rows.map((r) => [r.id, { accountId: r.account_id, place: r.place }]));
  }
}
