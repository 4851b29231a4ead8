/**
 * Event retention on real Postgres: events older than EVENT_RETENTION_DAYS are removed, in batches,
 * except those a webhook delivery still owes; their deliveries go with them; the API's clock decides.
 */
import { Clock } from '../../src/common/clock';
import { EventRetention } from '../../src/events/event-retention';
import { createAccount } from '../factories';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const DAY = 86_400_000;

describe('event retention (real Postgres)', () => {
  let db: TestDatabase;
  let api: TestApi;
  let account: number;
  let webhook: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api', { EVENT_RETENTION_DAYS: '30', EVENT_PRUNE_INTERVAL_MS: '0' }));
    account = (await createAccount(api.prisma)).id;
    webhook = (
      await api.prisma.webhook.create({
        data: {
          accountId: account,
          url: 'https://hooks.example.com/vps',
          eventTypes: [],
          secretSealed: Buffer.alloc(48),
          secretPrefix: 'whsec_test',
        },
      })
    ).id;
  });
  afterEach(() => jest.restoreAllMocks());
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  const eventAged = async (days: number, delivery?: 'pending' | 'abandoned') => {
    const e = await api.prisma.event.create({
      data: {
        accountId: account,
        type: 'snapshot.completed',
        subject: {},
        createdAt: new Date(Date.now() - days * DAY),
      },
    });
    // The account's webhook gets a pending delivery of every event (the outbox trigger); settle it.
    await api.prisma.webhookDelivery.update({
      where: { eventId_webhookId: { eventId: e.id, webhookId: webhook } },
      data: { status: delivery ?? 'delivered' },
    });
    return e.id;
  };
  const remaining = async (ids: bigint[]) =>
    (await api.prisma.event.findMany({ where: { id: { in: ids } }, select: { id: true } }))
      .map((e) => e.id)
      .sort();

  it('removes what is past retention, keeps what a delivery still owes, and takes the deliveries with it', async () => {
    const old = await eventAged(31);
    const oldDelivered = await eventAged(45);
    const oldOwed = await eventAged(40, 'pending');
    const fresh = await eventAged(29);
    const retention = api.app.get(EventRetention);

    expect(await retention.prune()).toBe(2);
    expect(await remaining([old, oldDelivered, oldOwed, fresh])).toEqual([oldOwed, fresh].sort());
    expect(await api.prisma.webhookDelivery.count({ where: { eventId: oldDelivered } })).toBe(0);
    expect(await retention.prune()).toBe(0); // nothing more to do: a second pass is a no-op

    // Once the sender settles the owed delivery, the event goes at the next pass.
    await api.prisma.webhookDelivery.updateMany({
      where: { eventId: oldOwed },
      data: { status: 'abandoned' },
    });
    expect(await retention.prune()).toBe(1);

    // Time passes (the injected clock): the fresh one is now past retention too.
    jest.spyOn(api.app.get(Clock), 'now').mockReturnValue(new Date(Date.now() + 2 * DAY));
    expect(await retention.prune()).toBe(1);
    expect(await remaining([fresh])).toEqual([]);
  });

  it('removes a backlog larger than one batch in one pass', async () => {
    const quiet = (await createAccount(api.prisma)).id; // no webhook: nothing owed
    const before = await api.prisma.event.count();
    await api.prisma.$executeRaw`
      INSERT INTO events (account_id, type, subject, created_at)
      SELECT ${quiet}::int, 'snapshot.completed', '{}'::jsonb, now() - interval '60 days'
      FROM generate_series(1, 12001)`;
    const kept = await eventAged(1);
    expect(await api.app.get(EventRetention).prune()).toBe(12_001);
    expect(await api.prisma.event.count()).toBe(before + 1);
    expect(await remaining([kept])).toEqual([kept]);
  });
});
