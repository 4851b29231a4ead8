import { Injectable, OnModuleDestroy } from '@nestjs/common';
import pg from 'pg';
import { AppConfig } from '../config/app-config';
import { StatementPool } from '../prisma/statement-pool';
import { ActionKind, ServerStatus } from '../generated/prisma/client';
import { MicroBatcher } from '../common/micro-batcher';
import { BackupFacts, BackupRef } from '../backups/backup-data-path';
import { ActionErrorCode } from './operation-failure';

/** An action as the runner needs it: its server, the server's node, its snapshot. */
export interface LoadedAction {
  id: number;
  kind: ActionKind;
  status: string;
  startedAt: Date | null;
  serverStatusBefore: ServerStatus | null;
  server: {
    id: number;
    domain: string;
    /** The domain's UUID; null until the worker pins it (see ActionRunner). */
    domainUuid: string | null;
    diskPath: string;
    status: ServerStatus;
    /** `backupStore`: the store (by name) a backup created now goes to. */
    node: { snapshotDir: string; backupStore: string };
  };
  snapshot: { id: number; status: string } | null;
  /** The backup a backup action creates, restores from or deletes. */
  backup: {
    id: number;
    status: string;
    accountId: number;
    /** Its store's name; null until its create job starts (then nothing of it is stored). */
    storeName: string | null;
  } | null;
}

/** What a finished backup create writes (see BackupDataPath.writeBackup). */
export interface BackupCreateResult {
  actionId: number;
  backupId: number;
  sizeBytes: number;
  storedBytes: number;
  mode: 'full' | 'incremental';
  modeReason: string | null;
  consistency: Consistency;
  checkpoint: string;
  at: Date;
}

export type Consistency = 'stopped' | 'quiesced' | 'crash_consistent';

/** What a finished create writes. */
export interface CreateResult {
  actionId: number;
  snapshotId: number;
  sizeBytes: number;
  consistency: Consistency;
  at: Date;
}

/** How an action ends (other than a successful create, see `succeedCreate`). */
export interface Finish {
  actionId: number;
  kind: ActionKind;
  outcome: 'succeeded' | 'failed';
  at: Date;
  error?: { code: ActionErrorCode; message: string };
  /** A restore: the server returns to this status (from `restoring`). */
  restoreServer?: { id: number; status: 'running' | 'stopped' };
  /** A power action that succeeded: its server has this status now. */
  powerServer?: { id: number; status: 'running' | 'stopped' };
  /** A failed create: its snapshot fails too (from `in_progress`), with this text. */
  failSnapshot?: { id: number; error: string };
  /** A failed backup create: its backup fails too (from `in_progress`), with this code and text. */
  failBackup?: { id: number; code: string; error: string };
}

interface ActionRow {
  id: number;
  kind: ActionKind;
  status: string;
  started_at: Date | null;
  server_status_before: ServerStatus | null;
  server_id: number;
  domain: string;
  domain_uuid: string | null;
  disk_path: string;
  server_status: ServerStatus;
  snapshot_dir: string;
  node_backup_store: string;
  snap_id: number | null;
  snap_status: string | null;
  backup_id: number | null;
  backup_status: string | null;
  backup_account_id: number | null;
  backup_store_name: string | null;
}

/**
 * Stores a server's domain UUID only while it has none; answers the UUID the row holds afterwards
 * (null when another statement stored one after this statement's snapshot: read it again).
 */
const PIN_DOMAIN_UUID = `
  WITH u AS (
    UPDATE servers SET domain_uuid = $2::uuid WHERE id = $1::int AND domain_uuid IS NULL
    RETURNING domain_uuid
  )
  SELECT COALESCE((SELECT domain_uuid FROM u), (SELECT domain_uuid FROM servers WHERE id = $1::int))::text
    AS domain_uuid`;

/** One call's own outcome inside a batch: a batch never fails a call because of another one. */
type Settled<V> = { ok: true; value: V } | { ok: false; error: unknown };

const ACTION_COLUMNS = `v.id AS server_id, v.domain, v.domain_uuid::text AS domain_uuid, v.disk_path, v.status::text AS server_status, n.snapshot_dir, n.backup_store AS node_backup_store,
  sn.id AS snap_id, sn.status::text AS snap_status,
  b.id AS backup_id, b.status::text AS backup_status, b.account_id AS backup_account_id,
  b.store AS backup_store_name`;

/**
 * The claim of any number of actions (pending, or running again after a retry or a stalled job) and
 * the load of what their runs need, in one statement: the conditional UPDATE is the claim (a finished
 * or missing action yields no row), its RETURNING joined to server, node and snapshot is the load.
 * Each action keeps its own claim time.
 */
const CLAIM = `
  WITH k AS (SELECT * FROM unnest($1::int[], $2::timestamptz[]) AS k(id, at)),
  c AS (
    UPDATE actions a
    SET status = 'running', started_at = COALESCE(a.started_at, k.at), heartbeat_at = k.at, attempts = a.attempts + 1
    FROM k
    WHERE a.id = k.id AND a.status IN ('pending', 'running')
    RETURNING a.id, a.kind::text AS kind, a.status::text AS status, a.started_at,
              a.server_status_before::text AS server_status_before, a.server_id, a.snapshot_id, a.backup_id
  )
  SELECT c.id, c.kind, c.status, c.started_at, c.server_status_before, ${ACTION_COLUMNS}
  FROM c
  JOIN servers v ON v.id = c.server_id
  JOIN nodes n ON n.id = v.node_id
  LEFT JOIN snapshots sn ON sn.id = c.snapshot_id
  LEFT JOIN backups b ON b.id = c.backup_id`;

const LOAD = `
  SELECT a.id, a.kind::text AS kind, a.status::text AS status, a.started_at,
         a.server_status_before::text AS server_status_before, ${ACTION_COLUMNS}
  FROM actions a
  JOIN servers v ON v.id = a.server_id
  JOIN nodes n ON n.id = v.node_id
  LEFT JOIN snapshots sn ON sn.id = a.snapshot_id
  LEFT JOIN backups b ON b.id = a.backup_id
  WHERE a.id = $1`;

/**
 * Successful creates, any number at once: each action succeeds and its snapshot completes, only from
 * `running` / `in_progress`, and a snapshot only together with its own action (atomically: one
 * statement). Returns the ids of the actions this statement ended.
 */
const SUCCEED_CREATES = `
  WITH k AS (
    SELECT * FROM unnest($1::int[], $2::int[], $3::bigint[], $4::text[], $5::timestamptz[])
      AS k(action_id, snapshot_id, size_bytes, consistency, at)
  ), a AS (
    UPDATE actions x
    SET status = 'succeeded', progress = 100, finished_at = k.at, heartbeat_at = k.at
    FROM k
    WHERE x.id = k.action_id AND x.status = 'running'
    RETURNING x.id
  ), s AS (
    UPDATE snapshots sn
    SET status = 'completed', progress = 100, size_bytes = k.size_bytes,
        consistency = k.consistency::snapshot_consistency, completed_at = k.at
    FROM k JOIN a ON a.id = k.action_id
    WHERE sn.id = k.snapshot_id AND sn.status = 'in_progress'
    RETURNING sn.id
  )
  SELECT a.id FROM a`;

const PROGRESS = `
  WITH a AS (
    UPDATE actions SET progress = $2::smallint, heartbeat_at = $3::timestamptz
    WHERE id = $1::int AND status = 'running'
    RETURNING id
  ), s AS (
    UPDATE snapshots SET progress = $2::smallint
    WHERE id = $4::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)
    RETURNING id
  )
  UPDATE backups SET progress = $2::smallint
  WHERE id = $5::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)`;

/** The first step of a statement that ends action $1 well at $3 with its backup: only from `running`. */
const ACTION_SUCCEEDS = `a AS (
    UPDATE actions SET status = 'succeeded', progress = 100, finished_at = $3::timestamptz,
                       heartbeat_at = $3::timestamptz
    WHERE id = $1::int AND status = 'running'
    RETURNING id
  )`;

/** A successful backup create: the action succeeds and its backup completes, atomically, only from `running`. */
const SUCCEED_BACKUP_CREATE = `
  WITH ${ACTION_SUCCEEDS}, b AS (
    UPDATE backups
    SET status = 'completed', progress = 100, size_bytes = $4::bigint, stored_bytes = $5::bigint,
        mode = $6::backup_mode, mode_reason = $7::varchar, consistency = $8::snapshot_consistency,
        checkpoint = $9::varchar, completed_at = $3::timestamptz
    WHERE id = $2::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)
    RETURNING id
  )
  SELECT count(*)::int AS done FROM a`;

/**
 * A verification's verdict: the action succeeds (it ran to the end) and a live backup that passed gets
 * `verified_at`; one that failed becomes `corrupt` with the error, and the event backup.corrupt is
 * recorded — all in one statement, only from `running`. A backup deleted meanwhile is left alone.
 */
const RECORD_VERIFICATION = `
  WITH ${ACTION_SUCCEEDS}, b AS (
    UPDATE backups
    SET verified_at = CASE WHEN $4::boolean THEN $3::timestamptz ELSE verified_at END,
        status = CASE WHEN $4::boolean THEN status ELSE 'corrupt' END,
        error_code = CASE WHEN $4::boolean THEN error_code ELSE 'backup_corrupt' END,
        error = CASE WHEN $4::boolean THEN error ELSE $5::varchar END
    WHERE id = $2::int AND deleted_at IS NULL AND status IN ('completed', 'corrupt') AND EXISTS (SELECT 1 FROM a)
    RETURNING id, account_id, server_id
  ), e AS (
    SELECT emit_event(b.account_id, 'backup.corrupt',
                      jsonb_build_object('backup_id', b.id, 'server_id', b.server_id, 'action_id', $1::int))
    FROM b WHERE NOT $4::boolean
  )
  SELECT (SELECT count(*) FROM a)::int AS done, (SELECT count(*) FROM e)::int AS events`;

/**
 * The backup a new backup of the server is incremental from: its latest completed (not corrupt, not
 * deleted) backup older than this one that left a checkpoint.
 */
const BACKUP_BASE = `
  SELECT id, account_id, store, checkpoint FROM backups
  WHERE server_id = $1::int AND id < $2::int AND status = 'completed' AND deleted_at IS NULL
    AND checkpoint IS NOT NULL AND store IS NOT NULL
  ORDER BY completed_at DESC, id DESC
  LIMIT 1`;

/**
 * The store a backup being created goes to: the one recorded on its row by an earlier attempt, else its
 * node's store now, recorded. Its chunk references live under that name, so a retry keeps it. Also
 * what the row says of the backup, which its manifest carries (BackupFacts).
 */
const BACKUP_STORE_OF_CREATE = `
  UPDATE backups SET store = COALESCE(store, $2::varchar)
  WHERE id = $1::int
  RETURNING store, server_id, name, description, kind::text AS kind, created_at, expires_at`;

/**
 * Stamps running actions. A row another statement holds locked is skipped, not waited for: that is an
 * outcome being written (or a claim), and a stamp must never wait on, or deadlock with, a batch.
 */
const HEARTBEAT = `
  UPDATE actions SET heartbeat_at = $2::timestamptz
  WHERE id IN (SELECT id FROM actions WHERE id = ANY($1::int[]) AND status = 'running' FOR UPDATE SKIP LOCKED)`;

/** The statement that ends one action as `f` says, with its name (one prepared statement per shape). */
function finishStatement(f: Finish): pg.QueryConfig {
  const values: unknown[] = [f.actionId, f.at];
  const p = (v: unknown) => `$${values.push(v)}`;
  let set = `status = '${f.outcome}', finished_at = $2::timestamptz, heartbeat_at = $2::timestamptz`;
  if (f.outcome === 'succeeded') set += ', progress = 100';
  if (f.error) {
    set += `, error_code = ${p(f.error.code)}::varchar, error_message = ${p(f.error.message.slice(0, 1000))}::varchar`;
  }
  let more = '';
  if (f.restoreServer) {
    more += `, srv AS (
      UPDATE servers SET status = ${p(f.restoreServer.status)}::server_status
      WHERE id = ${p(f.restoreServer.id)}::int AND status = 'restoring' AND EXISTS (SELECT 1 FROM a)
      RETURNING id)`;
  }
  if (f.powerServer) {
    more += `, pwr AS (
      UPDATE servers SET status = ${p(f.powerServer.status)}::server_status
      WHERE id = ${p(f.powerServer.id)}::int AND EXISTS (SELECT 1 FROM a)
      RETURNING id)`;
  }
  if (f.failSnapshot) {
    more += `, snap AS (
      UPDATE snapshots SET status = 'failed', error = ${p(f.failSnapshot.error.slice(0, 1000))}::varchar,
             completed_at = $2::timestamptz
      WHERE id = ${p(f.failSnapshot.id)}::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)
      RETURNING id)`;
  }
  if (f.failBackup) {
    more += `, bk AS (
      UPDATE backups SET status = 'failed', error_code = ${p(f.failBackup.code.slice(0, 64))}::varchar,
             error = ${p(f.failBackup.error.slice(0, 1000))}::varchar, completed_at = $2::timestamptz
      WHERE id = ${p(f.failBackup.id)}::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)
      RETURNING id)`;
  }
  return {
    name: `action-finish-${f.outcome}${f.error ? '-e' : ''}${f.restoreServer ? '-srv' : ''}${f.powerServer ? '-pwr' : ''}${f.failSnapshot ? '-snap' : ''}${f.failBackup ? '-bk' : ''}`,
    text: `WITH a AS (UPDATE actions SET ${set} WHERE id = $1::int AND status = 'running' RETURNING id)${more}
      SELECT count(*)::int AS done FROM a`,
    values,
  };
}

function toAction(r: ActionRow): LoadedAction {
  return {
    id: r.id,
    kind: r.kind,
    status: r.status,
    startedAt: r.started_at,
    serverStatusBefore: r.server_status_before,
    server: {
      id: r.server_id,
      domain: r.domain,
      domainUuid: r.domain_uuid,
      diskPath: r.disk_path,
      status: r.server_status,
      node: { snapshotDir: r.snapshot_dir, backupStore: r.node_backup_store },
    },
    snapshot: r.snap_id !== null ? { id: r.snap_id, status: r.snap_status! } : null,
    backup:
      r.backup_id !== null
        ? {
            id: r.backup_id,
            status: r.backup_status!,
            accountId: r.backup_account_id!,
            storeName: r.backup_store_name,
          }
        : null,
  };
}

/**
 * Splits `keys` into rounds in which no id appears twice, keeping their order: a statement over a
 * batch touches each row once, so a second call for the same action goes into a later statement and
 * sees what the first one did, exactly as if the two had been sent one after the other.
 */
function rounds<K>(keys: K[], id: (k: K) => number): { key: K; index: number }[][] {
  const out: { key: K; index: number }[][] = [];
  const seen: Set<number>[] = [];
  keys.forEach((key, index) => {
    let r = 0;
    while (seen[r]?.has(id(key))) r++;
    (seen[r] ??= new Set()).add(id(key));
    (out[r] ??= []).push({ key, index });
  });
  return out;
}

/**
 * The worker's writes to actions (claim, progress, heartbeat, outcome), on a small pool of its own
 * with named prepared statements (parsed and planned once per connection), off the ORM: they are
 * most of the worker's queries. Claims and successful creates of jobs running at the same time are
 * gathered into one statement each (a micro-batch per turn of the event loop): fewer round trips
 * and commits, every condition of the single-row statements kept per row. If a batch statement
 * fails, each of its calls is tried again alone, so one bad row cannot fail the others.
 */
@Injectable()
export class ActionStore implements OnModuleDestroy {
  private readonly claims = new MicroBatcher<{ id: number; at: Date }, Settled<LoadedAction | null>>((keys) =>
    this.settleEach(
      keys,
      (k) => k.id,
      (ks) => this.claimMany(ks),
    ),
  );
  private readonly creates = new MicroBatcher<CreateResult, Settled<boolean>>((keys) =>
    this.settleEach(
      keys,
      (k) => k.actionId,
      (ks) => this.succeedCreates(ks),
    ),
  );

  private readonly pool: StatementPool;

  constructor(config: AppConfig) {
    // Four connections: a claim batch and a finish batch in flight, with room for progress and heartbeats.
    this.pool = new StatementPool(config.databaseUrl, 4);
  }

  /** Claims the action and loads it (null: finished or missing — nothing to run). */
  async claim(actionId: number, at: Date): Promise<LoadedAction | null> {
    return unwrap(await this.claims.load({ id: actionId, at }));
  }

  /** The action as it is (for the reaper), or null. */
  async load(actionId: number): Promise<LoadedAction | null> {
    const { rows } = await this.pool.query<ActionRow>({
      name: 'action-load',
      text: LOAD,
      values: [actionId],
    });
    return rows[0] ? toAction(rows[0]) : null;
  }

  /** Whether this call ended the action (false: it was not running — a duplicate, or finished already). */
  async succeedCreate(result: CreateResult): Promise<boolean> {
    return unwrap(await this.creates.load(result));
  }

  /** Ends the action as `f` says, atomically; only from `running`. Whether this call ended it. */
  async finish(f: Finish): Promise<boolean> {
    const { rows } = await this.pool.query<{ done: number }>(finishStatement(f));
    return rows[0]?.done === 1;
  }

  /** Progress of a running action and (for a create) of its snapshot or backup, in one statement. */
  async progress(
    actionId: number,
    created: { snapshotId: number | null; backupId: number | null },
    pct: number,
    at: Date,
  ): Promise<void> {
    await this.pool.query({
      name: 'action-progress',
      text: PROGRESS,
      values: [actionId, pct, at, created.snapshotId, created.backupId],
    });
  }

  /** Whether this call ended the backup create (false: it was not running — a duplicate, or finished). */
  async succeedBackupCreate(r: BackupCreateResult): Promise<boolean> {
    const { rows } = await this.pool.query<{ done: number }>({
      name: 'action-succeed-backup-create',
      text: SUCCEED_BACKUP_CREATE,
      values: [
        r.actionId,
        r.backupId,
        r.at,
        String(r.sizeBytes),
        String(r.storedBytes),
        r.mode,
        r.modeReason,
        r.consistency,
        r.checkpoint,
      ],
    });
    return rows[0]?.done === 1;
  }

  /**
   * Records a verification's verdict (see RECORD_VERIFICATION): `error` null when the backup passed.
   * Whether this call ended the action.
   */
  async recordVerification(
    actionId: number,
    backupId: number,
    error: string | null,
    at: Date,
  ): Promise<boolean> {
    const { rows } = await this.pool.query<{ done: number }>({
      name: 'action-record-verification',
      text: RECORD_VERIFICATION,
      values: [actionId, backupId, at, error === null, error],
    });
    return rows[0]?.done === 1;
  }

  /**
   * The store a backup create writes to (see BACKUP_STORE_OF_CREATE), `nodeStore` being its node's
   * store, and the facts its manifest records; null when the backup row is gone.
   */
  async backupOfCreate(
    backupId: number,
    nodeStore: string,
  ): Promise<{ storeName: string; facts: BackupFacts } | null> {
    const { rows } = await this.pool.query<{
      store: string;
      server_id: number;
      name: string;
      description: string;
      kind: BackupFacts['kind'];
      created_at: Date;
      expires_at: Date | null;
    }>({ name: 'backup-of-create', text: BACKUP_STORE_OF_CREATE, values: [backupId, nodeStore] });
    const r = rows[0];
    if (!r) return null;
    return {
      storeName: r.store,
      facts: {
        serverId: r.server_id,
        name: r.name,
        description: r.description,
        kind: r.kind,
        createdAt: r.created_at,
        expiresAt: r.expires_at,
      },
    };
  }

  /** The base of the server's next incremental backup (see BACKUP_BASE), or null for a full one. */
  async backupBase(
    serverId: number,
    backupId: number,
  ): Promise<{ backup: BackupRef; checkpoint: string } | null> {
    const { rows } = await this.pool.query<{
      id: number;
      account_id: number;
      store: string;
      checkpoint: string;
    }>({ name: 'backup-base', text: BACKUP_BASE, values: [serverId, backupId] });
    const r = rows[0];
    return r
      ? {
          backup: { id: r.id, accountId: r.account_id, storeName: r.store },
          checkpoint: r.checkpoint,
        }
      : null;
  }

  /**
   * Records `uuid` as the server's domain UUID unless it has one already; returns the one it holds
   * afterwards. Throws the database's unique violation (23505) when another server of the node holds it.
   */
  async pinDomainUuid(serverId: number, uuid: string): Promise<string | null> {
    const query = () =>
      this.pool.query<{ domain_uuid: string | null }>({
        name: 'server-pin-domain-uuid',
        text: PIN_DOMAIN_UUID,
        values: [serverId, uuid],
      });
    const first = (await query()).rows[0]?.domain_uuid ?? null;
    return first ?? (await query()).rows[0]?.domain_uuid ?? null;
  }

  /** Proof of life of running actions, in one statement. */
  async heartbeat(actionIds: number[], at: Date): Promise<void> {
    await this.pool.query({ name: 'action-heartbeat', text: HEARTBEAT, values: [actionIds, at] });
  }

  async onModuleDestroy(): Promise<void> {
    await this.pool.close();
  }

  private async claimMany(keys: { id: number; at: Date }[]): Promise<(LoadedAction | null)[]> {
    const { rows } = await this.pool.query<ActionRow>({
      name: 'action-claim',
      text: CLAIM,
      values: [keys.map((k) => k.id), keys.map((k) => k.at)],
    });
    const byId = new Map(rows.map((r) => [r.id, toAction(r)]));
    return keys.map((k) => byId.get(k.id) ?? null);
  }

  private async succeedCreates(keys: CreateResult[]): Promise<boolean[]> {
    const { rows } = await this.pool.query<{ id: number }>({
      name: 'action-succeed-creates',
      text: SUCCEED_CREATES,
      values: [
        keys.map((k) => k.actionId),
        keys.map((k) => k.snapshotId),
        keys.map((k) => String(k.sizeBytes)),
        keys.map((k) => k.consistency),
        keys.map((k) => k.at),
      ],
    });
    const done = new Set(rows.map((r) => r.id));
    return keys.map((k) => done.has(k.actionId));
  }

  /**
   * Runs `many` over the batch (in rounds without repeated ids); if a statement fails and it held more
   * than one call, each of them is tried alone, and only a call that fails alone gets an error.
   */
  private async settleEach<K, V>(
    keys: K[],
    id: (k: K) => number,
    many: (ks: K[]) => Promise<V[]>,
  ): Promise<Settled<V>[]> {
    const out = new Array<Settled<V>>(keys.length);
    for (const round of rounds(keys, id)) {
      try {
        const values = await many(round.map((r) => r.key));
        round.forEach((r, i) => (out[r.index] = { ok: true, value: values[i] }));
      } catch (e) {
        if (round.length === 1) {
          out[round[0].index] = { ok: false, error: e };
          continue;
        }
        for (const r of round) {
          try {
            out[r.index] = { ok: true, value: (await many([r.key]))[0] };
          } catch (err) {
            out[r.index] = { ok: false, error: err };
          }
        }
      }
    }
    return out;
  }
}

function unwrap<V>(s: Settled<V>): V {
  if (s.ok) return s.value;
  throw s.error;
}
