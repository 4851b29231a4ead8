/**
 * Webhooks survive their sender dying: a receiver answers 500 half the time while the sender process
 * (`node dist/main.js webhooks`) is SIGKILLed again and again as events keep coming. In the end every
 * event has been answered 2xx at least once, every request's signature verifies with the
 * `standardwebhooks` package, and every repeat of an event carries the same webhook-id and body.
 */
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { startReceiver, Receiver } from '../support/webhook-receiver';
import { AppProcess, eventually, FaultLab, http, recordFigures, sleep } from './support/fault-env';

const FILE = 'test/faults/webhooks-crash.fault-spec.ts';
const SENDER_ENV = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_ADDRESSES: '127.0.0.0/8',
  WEBHOOK_POLL_INTERVAL_MS: '50',
  WEBHOOK_BACKOFF_BASE_MS: '100',
  WEBHOOK_BACKOFF_MAX_MS: '1000',
  WEBHOOK_TIMEOUT_MS: '1000',
  WEBHOOK_CONCURRENCY: '8',
};

describe('webhooks across sender crashes (SIGKILL of real sender processes)', () => {
  let lab: FaultLab;
  let api: AppProcess;
  let receiver: Receiver;

  beforeAll(async () => {
    lab = await FaultLab.create();
    api = await lab.startApi(SENDER_ENV);
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
    await lab?.close();
  });

  // Five sender starts on a busy machine take most of the time.
  jest.setTimeout(240_000);

  it('a receiver failing half the time, the sender killed 4 times: every event delivered at least once, signed, duplicates share a webhook-id', async () => {
    const started = Date.now();
    const t = await lab.tenant();
    const created = await http(`${api.url}/api/v1/webhooks/`, {
      method: 'POST',
      headers: t.auth,
      body: { url: receiver.url },
    });
    expect(created.status).toBe(201);
    const secret = created.body.secret as string;
    receiver.answer = () => (Math.random() < 0.5 ? 500 : 200);

    let emitted = 0;
    const emit = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await lab.prisma
          .$executeRaw`SELECT emit_event(${t.accountId}, 'backup.pruned', ${JSON.stringify({ backup_id: ++emitted })}::jsonb)`;
      }
    };
    const kills: number[] = [];
    for (let round = 0; round < 4; round++) {
      const sender = await lab.startWebhookSender(SENDER_ENV);
      await emit(40);
      // Killed while it is working through them (some answered, some mid-request, some not yet claimed).
      await eventually(async () => receiver.received.length > kills.length * 40 + 10, 20_000, 10);
      expect(await sender.kill()).toEqual({ code: null, signal: 'SIGKILL' });
      kills.push(receiver.received.length);
    }
    await emit(20);
    const last = await lab.startWebhookSender(SENDER_ENV);
    await eventually(
      async () => (await lab.prisma.webhookDelivery.count({ where: { status: { not: 'delivered' } } })) === 0,
      60_000,
      200,
    ).catch(async (e: unknown) => {
      throw new Error(`${String(e)}\n${last.tail()}`);
    });
    await sleep(300);
    await last.kill();

    const events = await lab.prisma.event.findMany({
      where: { accountId: t.accountId },
      orderBy: { id: 'asc' },
    });
    expect(events).toHaveLength(emitted);
    const verifier = new StandardWebhook(secret);
    const byId = new Map<string, { bodies: Set<string>; ok: number; sent: number }>();
    for (const hook of receiver.received) {
      expect(() => verifier.verify(hook.body, hook.headers)).not.toThrow();
      const id = hook.headers['webhook-id'];
      const seen = byId.get(id) ?? { bodies: new Set<string>(), ok: 0, sent: 0 };
      seen.bodies.add(hook.body);
      seen.sent++;
      if (hook.status < 300) seen.ok++;
      byId.set(id, seen);
    }
    for (const e of events) {
      const seen = byId.get(`evt_${e.id}`);
      expect({ event: Number(e.id), delivered: (seen?.ok ?? 0) >= 1 }).toEqual({
        event: Number(e.id),
        delivered: true,
      });
      expect(seen!.bodies.size).toBe(1);
      expect(JSON.parse([...seen!.bodies][0])).toMatchObject({
        type: 'backup.pruned',
        data: { backup_id: expect.any(Number) },
      });
    }
    const duplicates = [...byId.values()].filter((s) => s.ok > 1).length;
    const requests = receiver.received.length;
    recordFigures({
      guarantee: 'Webhooks at least once across sender crashes',
      file: FILE,
      test: 'webhooks across sender crashes',
      faults: kills.length,
      checked: events.length,
      lost: 0,
      ms: Date.now() - started,
      note: `${requests} requests; ${duplicates} events answered 2xx more than once`,
    });
    process.stdout.write(
      `webhooks-crash: ${events.length} events, ${requests} requests, ${duplicates} delivered twice, ${kills.length} kills\n`,
    );
  });
});
