/**
 * The events outbox: an operation's outcome is recorded in the same statement that ends its action (a
 * trigger on actions), and `emit_event` records the rest inside the caller's transaction — so an event
 * exists exactly when its change committed.
 */
import { Client } from 'pg';
import { createTestDatabase, TestDatabase } from '../support/test-env';
import { EVENT_TYPES } from '../../src/events/event-types';

describe('events outbox', () => {
  let db: TestDatabase;
  let sql: Client;
  let account: number;
  let server: number;

  const newAction = async (kind: string): Promise<number> => {
    const { rows } = await sql.query<{ id: number }>(
      `INSERT INTO actions (kind, status, account_id, server_id) VALUES ($1::action_kind, 'running', $2, $3) RETURNING id`,
      [kind, account, server],
    );
    return rows[0].id;
  };
  const eventsOf = async (actionId: number) =>
    (
      await sql.query<{ type: string; subject: Record<string, number> }>(
        `SELECT type, subject FROM events WHERE (subject->>'action_id')::int = $1 ORDER BY id`,
        [actionId],
      )
    ).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = new Client({ connectionString: db.url });
    await sql.connect();
    account = (await sql.query<{ id: number }>(`INSERT INTO accounts (name) VALUES ('ev') RETURNING id`))
      .rows[0].id;
    const node = (
      await sql.query<{ id: number }>(
        `INSERT INTO nodes (name, driver, snapshot_dir, image_roots)
         VALUES ('ev-node', 'fake', '/var/lib/vps/snapshots', ARRAY['/var/lib/vps/images']) RETURNING id`,
      )
    ).rows[0].id;
    server = (
      await sql.query<{ id: number }>(
        `INSERT INTO servers (account_id, node_id, name, domain, disk_path)
         VALUES ($1, $2, 'ev', 'ev-dom', '/var/lib/vps/images/ev.qcow2') RETURNING id`,
        [account, node],
      )
    ).rows[0].id;
  });
  afterAll(async () => {
    await sql?.end();
    await db?.drop();
  });

  it('an ending create, restore or backup records its outcome once; deletes and progress record nothing', async () => {
    const cases: [string, string, string | null][] = [
      ['create_snapshot', 'succeeded', 'snapshot.completed'],
      ['create_snapshot', 'failed', 'snapshot.failed'],
      ['restore_snapshot', 'succeeded', 'restore.completed'],
      ['restore_backup', 'failed', 'restore.failed'],
      ['create_backup', 'succeeded', 'backup.completed'],
      ['stop_server', 'succeeded', 'power_action.completed'],
      ['reboot_server', 'failed', 'power_action.failed'],
      ['delete_snapshot', 'succeeded', null],
      ['delete_backup', 'failed', null],
    ];
    for (const [kind, outcome, type] of cases) {
      const id = await newAction(kind);
      await sql.query(`UPDATE actions SET progress = 50 WHERE id = $1`, [id]);
      await sql.query(`UPDATE actions SET status = $2::action_status, finished_at = now() WHERE id = $1`, [
        id,
        outcome,
      ]);
      // A later write to the finished row (e.g. a duplicate outcome) records nothing more.
      await sql.query(`UPDATE actions SET status = $2::action_status WHERE id = $1`, [id, outcome]);
      const events = await eventsOf(id);
      expect({ kind, outcome, events }).toEqual({
        kind,
        outcome,
        events: type ? [{ type, subject: { action_id: id, server_id: server } }] : [],
      });
      if (type) expect(EVENT_TYPES).toContain(type);
    }
  });

  it('an outcome rolled back leaves no event; emit_event commits or rolls back with its transaction', async () => {
    const id = await newAction('create_backup');
    await sql.query('BEGIN');
    await sql.query(`UPDATE actions SET status = 'succeeded' WHERE id = $1`, [id]);
    await sql.query(`SELECT emit_event($1, 'backup.pruned', '{"backup_id": 1}'::jsonb)`, [account]);
    await sql.query('ROLLBACK');
    expect(await eventsOf(id)).toEqual([]);
    const pruned = () =>
      sql.query(`SELECT count(*)::int AS n FROM events WHERE type = 'backup.pruned' AND account_id = $1`, [
        account,
      ]);
    expect((await pruned()).rows[0].n).toBe(0);
    await sql.query(`SELECT emit_event($1, 'backup.pruned', '{"backup_id": 1}'::jsonb)`, [account]);
    expect((await pruned()).rows[0].n).toBe(1);
  });

  it('any statement that changes a delete protection records it, with the value set; other updates record nothing', async () => {
    for (const [table, type, member] of [
      ['snapshots', 'snapshot.protection_changed', 'snapshot_id'],
      ['backups', 'backup.protection_changed', 'backup_id'],
    ] as const) {
      const extra = table === 'backups' ? ', store' : '';
      const id = (
        await sql.query<{ id: number }>(
          `INSERT INTO ${table} (account_id, server_id, name, status${extra})
           VALUES ($1, $2, 'p', 'completed'${table === 'backups' ? ", 'default'" : ''}) RETURNING id`,
          [account, server],
        )
      ).rows[0].id;
      await sql.query(`UPDATE ${table} SET labels = '{"a": "b"}' WHERE id = $1`, [id]);
      await sql.query(`UPDATE ${table} SET delete_protected = true WHERE id = $1`, [id]);
      await sql.query(`UPDATE ${table} SET delete_protected = true, name = 'q' WHERE id = $1`, [id]);
      await sql.query('BEGIN');
      await sql.query(`UPDATE ${table} SET delete_protected = false WHERE id = $1`, [id]);
      await sql.query('ROLLBACK');
      await sql.query(`UPDATE ${table} SET delete_protected = false WHERE id = $1`, [id]);
      const { rows } = await sql.query<{ type: string; subject: unknown }>(
        `SELECT type, subject FROM events WHERE type = $2 AND (subject->>'${member}')::int = $1 ORDER BY id`,
        [id, type],
      );
      expect(rows).toEqual([
        { type, subject: { [member]: id, server_id: server, protection: { delete: true } } },
        { type, subject: { [member]: id, server_id: server, protection: { delete: false } } },
      ]);
    }
  });
});
