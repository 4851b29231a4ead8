import { Logger } from '@nestjs/common';
import { Clock } from '../common/clock';
import { PrismaService } from '../prisma/prisma.service';
import { AuditRecord, AuditService } from './audit.service';

/**
 * The audit log's batch fallback, against a database stand-in that records each INSERT's actions and
 * fails as told (the real INSERT, ordering and one-bad-row cases are in test/e2e/hardening).
 */
describe('AuditService: what a failed batch INSERT does next', () => {
  const BUSY = new Error('timeout exceeded when trying to connect'); // node-postgres pool, saturated
  const BAD_ROW = Object.assign(new Error('value too long for type character varying(64)'), {
    code: '22001',
  });

  function serviceFailing(fail: (actions: string[]) => Error | null) {
    const inserts: string[][] = [];
    const prisma = {
      // Tagged template: the 4th interpolated value is the `action` column's array.
      $executeRaw: (_sql: TemplateStringsArray, ...values: unknown[]) => {
        const actions = values[4] as string[];
        inserts.push(actions);
        const e = fail(actions);
        return e ? Promise.reject(e) : Promise.resolve(actions.length);
      },
    } as unknown as PrismaService;
    const errors: unknown[] = [];
    const service = new AuditService(prisma, new Clock());
    jest.spyOn(Logger.prototype, 'error').mockImplementation((m: unknown) => void errors.push(m));
    return { service, inserts, errors };
  }

  const event = (action: string): AuditRecord => ({
    accountId: 1,
    tokenId: null,
    actor: 'test',
    action,
    outcome: 'accepted',
  });
  const recordTogether = (s: AuditService, actions: string[]) =>
    Promise.all(actions.map((a) => s.record(event(a))));

  afterEach(() => jest.restoreAllMocks());

  it('one bad row: the others are inserted one at a time, in the order they were recorded', async () => {
    const { service, inserts, errors } = serviceFailing((a) => (a.includes('bad') ? BAD_ROW : null));
    await recordTogether(service, ['one', 'bad', 'two', 'three']);
    expect(inserts).toEqual([['one', 'bad', 'two', 'three'], ['one'], ['bad'], ['two'], ['three']]);
    expect(errors).toHaveLength(1); // only the bad event is reported lost
  });

  it('a busy database fails every event of the batch at once: no retry row by row', async () => {
    const { service, inserts, errors } = serviceFailing(() => BUSY);
    await recordTogether(service, ['a', 'b', 'c']);
    expect(inserts).toEqual([['a', 'b', 'c']]);
    expect(errors).toHaveLength(3);
  });

  it('the database turning busy during the row-by-row retry stops it there', async () => {
    const { service, inserts, errors } = serviceFailing((a) =>
      a.length > 1 ? BAD_ROW : a[0] === 'b' ? BUSY : null,
    );
    await recordTogether(service, ['a', 'b', 'c', 'd']);
    expect(inserts).toEqual([['a', 'b', 'c', 'd'], ['a'], ['b']]);
    expect(errors).toHaveLength(3); // b, c and d
  });
});
