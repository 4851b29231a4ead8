/**
 * `vps`: the customer CLI of admin.vps.org's snapshots and backups API, over the typed client generated from the
 * OpenAPI document. Tables for people, `--json` for scripts; `--wait` follows an operation with a
 * progress bar on stderr (plain progress lines when stderr is not a terminal).
 *
 * Exit status: 0 done; 1 the API refused the request, the operation failed, or the API was
 * unreachable; 2 usage error (including a missing VPS_API_TOKEN); 130 interrupted while waiting.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { OptionValues, parseCommandLine, UsageError } from '../cli-kit/command-line';
import { ApiClient, ApiError, call, createApiClient, Schemas } from './client';
import { bar, keyValues, labelsCell, mib, protectedCell, table, time } from './format';
import { POWER_ACTION_TYPES, PowerActionType } from '../servers/power/power-actions';

export const DEFAULT_API_URL = 'https://admin.vps.org';
const DEFAULT_TIMEOUT_S = 3600;
const MAX_ID = 2_147_483_647;

export const USAGE = `usage: vps <command> [options]

commands:
  servers list [--selector SEL]         your servers, with their snapshot and backup quotas
  servers label SERVER_ID [--label K=V]...
                                        set its labels (replacing them all; none: remove them)
  servers start|stop|shutdown|reboot SERVER_ID [--wait]
                                        power it on; off at once; shut it down gracefully;
                                        or shut it down and start it again
  snapshots list [--server ID] [--selector SEL]
                                        snapshots, newest first
  snapshots create --server ID --name NAME [--description TEXT] [--label K=V]... [--wait]
                                        start a snapshot of a server
  snapshots label SNAPSHOT_ID [--label K=V]...
                                        set its labels (replacing them all; none: remove them)
  snapshots restore SNAPSHOT_ID [--wait]
                                        restore its server from it (overwrites the server's disk)
  snapshots delete SNAPSHOT_ID          delete it for good
  snapshots protect SNAPSHOT_ID         refuse every delete of it until it is unprotected
  snapshots unprotect SNAPSHOT_ID       let it be deleted again
  backups list [--server ID] [--kind manual|automatic|pre_restore] [--selector SEL]
                                        backups, newest first
  backups create --server ID --name NAME [--description TEXT] [--label K=V]... [--wait]
                                        start a backup of a server (to backup storage)
  backups label BACKUP_ID [--label K=V]...
                                        set its labels (replacing them all; none: remove them)
  backups restore BACKUP_ID [--server ID] [--wait]
                                        restore its server, or another of yours, from it
  backups verify BACKUP_ID [--wait]     read its stored data back and check every chunk
  backups delete BACKUP_ID              delete it for good
  backups protect BACKUP_ID             refuse every delete of it (retention's too) until unprotected
  backups unprotect BACKUP_ID           let it be deleted again
  actions get ACTION_ID [--wait]        a long operation: status and progress
  actions undo ACTION_ID [--wait]       undo a restore: put back the disk it replaced (from
                                        its safety copy, kept 7 days by default)
  webhooks list                         your webhook endpoints, with their state
  webhooks create --url URL [--events TYPE,...]
                                        send events (all types by default) to URL; prints
                                        its signing secret, shown this once only
  webhooks get WEBHOOK_ID               one endpoint: failing since when, disabled why
  webhooks delete WEBHOOK_ID            stop sending to it
  events list [--since EVENT_ID]        your events after EVENT_ID, oldest first

options:
  --json            machine-readable JSON on stdout
  --wait            follow the operation until it ends (progress on stderr); exit 1 if it fails
  --timeout SECS    stop waiting after SECS seconds (default ${DEFAULT_TIMEOUT_S}); the operation goes on
  --label K=V       a label (repeat for more), e.g. --label env=prod --label tier=db
  --selector SEL    only those whose labels match, e.g. 'env=prod,tier in (db,cache),!temp'
  -h, --help        this help
  --version         the CLI's version

environment:
  VPS_API_TOKEN     API token (required), e.g. vps_AbCd...
  VPS_API_URL       base URL of the API (default ${DEFAULT_API_URL})
  LANG=cy_GB.UTF-8  messages and errors in Welsh

exit status: 0 done, 1 refused / failed / unreachable, 2 usage error, 130 interrupted
`;

/** Where the CLI writes, and what it reads; `main.ts` passes the process's own. */
export interface Io {
  env: Record<string, string | undefined>;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  /** Called with a handler to run on Ctrl-C while waiting; returns a function that removes it. */
  onInterrupt?: (handler: () => void) => () => void;
}

const OPTIONS = {
  json: { type: 'boolean' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  server: { type: 'string' },
  name: { type: 'string' },
  description: { type: 'string' },
  kind: { type: 'string' },
  url: { type: 'string' },
  events: { type: 'string' },
  since: { type: 'string' },
  label: { type: 'string', multiple: true },
  selector: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

type Values = OptionValues<typeof OPTIONS>;

interface Ctx {
  io: Io;
  api: ApiClient;
  baseUrl: string;
  values: Values;
  args: string[];
  out: (s: string) => void;
  json: (v: unknown) => void;
}

interface Command {
  /** Positional arguments after the command words. */
  args: string[];
  /** Options besides --json and --help. */
  options: (keyof typeof OPTIONS)[];
  run: (ctx: Ctx) => Promise<number>;
}

const serversLabel = labelCommand('server', (ctx, id, body) =>
  ctx.api.PATCH('/api/v1/servers/{server_id}/', { params: { path: { server_id: id } }, body }),
);
const snapshotsLabel = labelCommand('snapshot', (ctx, id, body) =>
  ctx.api.PATCH('/api/v1/snapshots/{snapshot_id}/', { params: { path: { snapshot_id: id } }, body }),
);
const backupsLabel = labelCommand('backup', (ctx, id, body) =>
  ctx.api.PATCH('/api/v1/backups/{backup_id}/', { params: { path: { backup_id: id } }, body }),
);

const COMMANDS: Record<string, Command> = {
  'servers list': { args: [], options: ['selector'], run: serversList },
  'servers label': { args: ['SERVER_ID'], options: ['label'], run: serversLabel },
  ...Object.fromEntries(
    POWER_ACTION_TYPES.map((type): [string, Command] => [
      `servers ${type}`,
      { args: ['SERVER_ID'], options: ['wait', 'timeout'], run: (ctx) => serversPower(ctx, type) },
    ]),
  ),
  'snapshots list': { args: [], options: ['server', 'selector'], run: snapshotsList },
  'snapshots create': {
    args: [],
    options: ['server', 'name', 'description', 'label', 'wait', 'timeout'],
    run: snapshotsCreate,
  },
  'snapshots label': { args: ['SNAPSHOT_ID'], options: ['label'], run: snapshotsLabel },
  'snapshots restore': { args: ['SNAPSHOT_ID'], options: ['wait', 'timeout'], run: snapshotsRestore },
  'snapshots delete': { args: ['SNAPSHOT_ID'], options: [], run: snapshotsDelete },
  'snapshots protect': { args: ['SNAPSHOT_ID'], options: [], run: changeProtection('snapshot', true) },
  'snapshots unprotect': { args: ['SNAPSHOT_ID'], options: [], run: changeProtection('snapshot', false) },
  'backups list': { args: [], options: ['server', 'kind', 'selector'], run: backupsList },
  'backups create': {
    args: [],
    options: ['server', 'name', 'description', 'label', 'wait', 'timeout'],
    run: backupsCreate,
  },
  'backups label': { args: ['BACKUP_ID'], options: ['label'], run: backupsLabel },
  'backups restore': { args: ['BACKUP_ID'], options: ['server', 'wait', 'timeout'], run: backupsRestore },
  'backups verify': { args: ['BACKUP_ID'], options: ['wait', 'timeout'], run: backupsVerify },
  'backups delete': { args: ['BACKUP_ID'], options: [], run: backupsDelete },
  'backups protect': { args: ['BACKUP_ID'], options: [], run: changeProtection('backup', true) },
  'backups unprotect': { args: ['BACKUP_ID'], options: [], run: changeProtection('backup', false) },
  'actions get': { args: ['ACTION_ID'], options: ['wait', 'timeout'], run: actionsGet },
  'actions undo': { args: ['ACTION_ID'], options: ['wait', 'timeout'], run: actionsUndo },
  'webhooks list': { args: [], options: [], run: webhooksList },
  'webhooks create': { args: [], options: ['url', 'events'], run: webhooksCreate },
  'webhooks get': { args: ['WEBHOOK_ID'], options: [], run: webhooksGet },
  'webhooks delete': { args: ['WEBHOOK_ID'], options: [], run: webhooksDelete },
  'events list': { args: [], options: ['since'], run: eventsList },
};

function parseId(raw: string | undefined, what: string): number {
  if (raw === undefined) throw new UsageError(`${what} is required`);
  if (!/^[1-9]\d{0,9}$/.test(raw) || Number(raw) > MAX_ID) {
    throw new UsageError(`${what} must be a positive integer, got "${raw}"`);
  }
  return Number(raw);
}

/** `cy` when the locale is Welsh (LC_ALL, LC_MESSAGES, LANG), as Accept-Language. */
export function languageFromEnv(env: Record<string, string | undefined>): string | undefined {
  const locale = env.LC_ALL || env.LC_MESSAGES || env.LANG || '';
  return /^cy([_.@-]|$)/i.test(locale) ? 'cy' : undefined;
}

function version(): string {
  try {
    return (
      JSON.parse(readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'unknown';
  }
}

/** Runs one invocation; resolves to the exit status. Never throws. */
export async function run(argv: string[], io: Io): Promise<number> {
  try {
    const { values, positionals } = parseCommandLine(argv, OPTIONS);
    if (values.version) {
      io.stdout.write(`vps ${version()}\n`);
      return 0;
    }
    if (values.help || positionals.length === 0) {
      (positionals.length === 0 && !values.help ? io.stderr : io.stdout).write(USAGE);
      return values.help ? 0 : 2;
    }
    const name = positionals.slice(0, 2).join(' ');
    const command = COMMANDS[name];
    if (!command) throw new UsageError(`unknown command "${positionals.join(' ')}"`);
    const args = positionals.slice(2);
    if (args.length !== command.args.length) {
      throw new UsageError(
        command.args.length
          ? `"${name}" takes ${command.args.join(' ')}${args.length > command.args.length ? ` only, got "${args.join(' ')}"` : ''}`
          : `"${name}" takes no arguments, got "${args.join(' ')}"`,
      );
    }
    for (const key of Object.keys(values) as (keyof typeof OPTIONS)[]) {
      if (key !== 'json' && !command.options.includes(key)) {
        throw new UsageError(`option --${key} does not apply to "${name}"`);
      }
    }
    const token = io.env.VPS_API_TOKEN?.trim();
    if (!token) throw new UsageError('VPS_API_TOKEN is not set (an API token, e.g. vps_AbCd...)');
    const baseUrl = (io.env.VPS_API_URL?.trim() || DEFAULT_API_URL).replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]/.test(baseUrl))
      throw new UsageError(`VPS_API_URL must be an http(s) URL, got "${baseUrl}"`);
    const api = createApiClient({
      baseUrl,
      token,
      language: languageFromEnv(io.env),
      userAgent: `vps-cli/${version()}`,
    });
    const ctx: Ctx = {
      io,
      api,
      baseUrl,
      values,
      args,
      out: (s) => io.stdout.write(`${s}\n`),
      json: (v) => io.stdout.write(`${JSON.stringify(v, null, 2)}\n`),
    };
    return await command.run(ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`vps: ${e.message}\nRun "vps --help" for usage.\n`);
      return 2;
    }
    if (e instanceof Interrupted) {
      io.stderr.write(`${e.message}\n`);
      return 130;
    }
    if (e instanceof ApiError) {
      io.stderr.write(`error: ${e.oneLine()}\n`);
      return 1;
    }
    io.stderr.write(`error: ${e instanceof Error ? e.message : String(e)} (internal)\n`);
    return 1;
  }
}

// ---------------------------------------------------------------- commands

const MAX_PAGES = 10_000;

/** Follows the pages (at the server's default page size, always allowed) to the end. */
async function allPages<T>(fetchPage: (page: number) => Promise<{ results: T[]; next?: string | null }>) {
  const all: T[] = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const p = await fetchPage(page);
    all.push(...p.results);
    if (!p.next) break;
  }
  return all;
}

async function serversList(ctx: Ctx): Promise<number> {
  const servers = await allPages((page) =>
    call(
      ctx.baseUrl,
      ctx.api.GET('/api/v1/servers/', { params: { query: { page, ...selectorQuery(ctx) } } }),
    ),
  );
  if (ctx.values.json) {
    ctx.json(servers);
    return 0;
  }
  if (servers.length === 0) {
    ctx.out('no servers');
    return 0;
  }
  ctx.out(
    table(
      ['ID', 'NAME', 'STATUS', 'SNAPSHOTS', 'BACKUPS', 'CURRENT ACTION', 'CREATED', 'LABELS'],
      servers.map((s) => [
        s.id,
        s.name,
        s.status,
        `${s.snapshot_quota.used}/${s.snapshot_quota.limit}`,
        `${s.backup_quota.used}/${s.backup_quota.limit}`,
        s.current_action
          ? `${s.current_action.kind} #${s.current_action.id} ${s.current_action.status} ${s.current_action.progress}%`
          : null,
        time(s.created_at),
        labelsCell(s.labels),
      ]),
    ),
  );
  return 0;
}

/** A status with its progress while in progress. */
function snapshotStatus(s: { status: string; progress?: number }): string {
  return s.status === 'in_progress' && s.progress !== undefined ? `in_progress ${s.progress}%` : s.status;
}

async function snapshotsList(ctx: Ctx): Promise<number> {
  const serverId = ctx.values.server === undefined ? undefined : parseId(ctx.values.server, '--server');
  const snapshots = await allPages((page) =>
    call(
      ctx.baseUrl,
      ctx.api.GET('/api/v1/snapshots/', {
        params: { query: { page, ...(serverId ? { server_id: serverId } : {}), ...selectorQuery(ctx) } },
      }),
    ),
  );
  if (ctx.values.json) {
    ctx.json(snapshots);
    return 0;
  }
  if (snapshots.length === 0) {
    ctx.out(serverId ? `no snapshots of server ${serverId}` : 'no snapshots');
    return 0;
  }
  ctx.out(
    table(
      ['ID', 'SERVER', 'NAME', 'STATUS', 'SIZE', 'CREATED', 'PROTECTED', 'LABELS', 'DESCRIPTION'],
      snapshots.map((s) => [
        s.id,
        `${s.server.name} (${s.server.id})`,
        s.name,
        snapshotStatus(s),
        mib(s.size_mb),
        time(s.created_at),
        protectedCell(s.protection),
        labelsCell(s.labels),
        s.description,
      ]),
    ),
  );
  return 0;
}

function requireActionId(actionId: number | undefined): number {
  if (!actionId) throw new ApiError('the API did not return an action id to follow', 'no_action_id', null);
  return actionId;
}

/** A create's answer, of a snapshot or a backup. */
interface Started {
  id: number;
  name: string;
  status: string;
  message: string;
  action_id?: number;
  server: { id: number; name: string };
}

/** The body of a create: `--server`, `--name`, `--description`, `--label`s. */
function createBody(ctx: Ctx): {
  server_id: number;
  name: string;
  description?: string;
  labels?: Record<string, string>;
} {
  const serverId = parseId(ctx.values.server, '--server');
  const name = ctx.values.name;
  if (name === undefined) throw new UsageError('--name is required');
  return {
    server_id: serverId,
    name,
    ...(ctx.values.description !== undefined ? { description: ctx.values.description } : {}),
    ...(ctx.values.label !== undefined ? { labels: labelsOf(ctx) } : {}),
  };
}

/** `<kind> label ID [--label K=V]...`: one PATCH of the resource's labels, then what it now has. */
function labelCommand(
  what: 'server' | 'snapshot' | 'backup',
  patch: (
    ctx: Ctx,
    id: number,
    body: { labels: Record<string, string> },
  ) => Promise<{
    data?: { id: number; labels?: Record<string, string> };
    error?: unknown;
    response: Response;
  }>,
): (ctx: Ctx) => Promise<number> {
  return async (ctx) => {
    const id = parseId(ctx.args[0], `${what.toUpperCase()}_ID`);
    return reportLabels(ctx, what, await call(ctx.baseUrl, patch(ctx, id, { labels: labelsOf(ctx) })));
  };
}

/** The `--label K=V` options as a map; the API checks keys and values (its 400 names the problem). */
function labelsOf(ctx: Ctx): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const given of ctx.values.label ?? []) {
    const eq = given.indexOf('=');
    if (eq === -1) throw new UsageError(`--label must be KEY=VALUE, got "${given}"`);
    const key = given.slice(0, eq);
    if (Object.prototype.hasOwnProperty.call(labels, key))
      throw new UsageError(`--label ${key} is given twice`);
    labels[key] = given.slice(eq + 1);
  }
  return labels;
}

/** `--selector` as the lists' `label_selector` query parameter. */
function selectorQuery(ctx: Ctx): { label_selector?: string } {
  return ctx.values.selector !== undefined ? { label_selector: ctx.values.selector } : {};
}

/** Prints a resource's labels after a `label` command. */
function reportLabels(ctx: Ctx, what: string, r: { id: number; labels?: Record<string, string> }): number {
  if (ctx.values.json) {
    ctx.json(r);
    return 0;
  }
  const labels = Object.entries(r.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  ctx.out(`${what} ${r.id} labels: ${labels.length ? labels.join(', ') : '(none)'}`);
  return 0;
}

/**
 * Reports a started create and, with --wait, follows it to the end and shows what it made (`reread`:
 * the resource as it ended, `details`: what to say of it).
 */
async function reportCreate<T>(
  ctx: Ctx,
  noun: 'snapshot' | 'backup',
  created: Started,
  reread: () => Promise<T>,
  details: (t: T | null) => (string | null | undefined)[],
): Promise<number> {
  const label = `${noun} ${created.id} "${created.name}" of server ${created.server.name} (${created.server.id})`;
  if (!ctx.values.wait) {
    if (ctx.values.json) ctx.json(created);
    else {
      ctx.out(`${label}: ${created.status}`);
      ctx.out(created.message);
      if (created.action_id) ctx.out(`follow it: vps actions get ${created.action_id} --wait`);
    }
    return 0;
  }
  if (!ctx.values.json) ctx.out(label);
  const action = await follow(ctx, requireActionId(created.action_id), `${noun} ${created.id}`);
  const made = await reread().catch(() => null);
  if (ctx.values.json) ctx.json(made ?? action);
  if (action.status === 'failed') return failed(ctx, `${noun} ${created.id} failed`, action);
  if (!ctx.values.json) {
    const said = details(made).filter(Boolean).join(', ');
    ctx.out(`${noun} ${created.id} completed${said ? `: ${said}` : ''}`);
  }
  return 0;
}

/** Reports a started restore (`what`: which server from what) and, with --wait, follows it. */
async function reportRestore(
  ctx: Ctx,
  restored: { message: string; action_id?: number; server: { id: number; name: string } },
  what: string,
): Promise<number> {
  if (!ctx.values.wait) {
    if (ctx.values.json) ctx.json(restored);
    else {
      ctx.out(`restoring ${what}`);
      ctx.out(restored.message);
      if (restored.action_id) ctx.out(`follow it: vps actions get ${restored.action_id} --wait`);
    }
    return 0;
  }
  if (!ctx.values.json) ctx.out(`restoring ${what}`);
  const action = await follow(ctx, requireActionId(restored.action_id), `restore of ${restored.server.name}`);
  if (ctx.values.json) ctx.json(action);
  if (action.status === 'failed') return failed(ctx, `restore of ${what} failed`, action);
  if (!ctx.values.json) ctx.out(`restored ${what}`);
  return 0;
}

/** `servers start|stop|shutdown|reboot`: asks for the power action and, with --wait, follows it. */
async function serversPower(ctx: Ctx, type: PowerActionType): Promise<number> {
  const serverId = parseId(ctx.args[0], 'SERVER_ID');
  const started = await call(
    ctx.baseUrl,
    ctx.api.POST('/api/v1/servers/{server_id}/actions/', {
      params: { path: { server_id: serverId } },
      body: { type },
    }),
  );
  const what = `${type} of server ${started.server.name} (${started.server.id})`;
  if (!ctx.values.wait) {
    if (ctx.values.json) ctx.json(started);
    else {
      ctx.out(`${what}: ${started.status}`);
      ctx.out(`follow it: vps actions get ${started.id} --wait`);
    }
    return 0;
  }
  const action = await follow(ctx, started.id, what);
  if (ctx.values.json) ctx.json(action);
  if (action.status === 'failed') return failed(ctx, `${what} failed`, action);
  if (!ctx.values.json) ctx.out(`${what} done`);
  return 0;
}

async function snapshotsCreate(ctx: Ctx): Promise<number> {
  const created = await call(ctx.baseUrl, ctx.api.POST('/api/v1/snapshots/', { body: createBody(ctx) }));
  return reportCreate(
    ctx,
    'snapshot',
    created,
    () =>
      call(
        ctx.baseUrl,
        ctx.api.GET('/api/v1/snapshots/{snapshot_id}/', { params: { path: { snapshot_id: created.id } } }),
      ),
    (s) => [mib(s?.size_mb), s?.consistency],
  );
}

async function snapshotsRestore(ctx: Ctx): Promise<number> {
  const snapshotId = parseId(ctx.args[0], 'SNAPSHOT_ID');
  const restored = await call(
    ctx.baseUrl,
    ctx.api.POST('/api/v1/snapshots/{snapshot_id}/restore/', {
      params: { path: { snapshot_id: snapshotId } },
    }),
  );
  return reportRestore(
    ctx,
    restored,
    `server ${restored.server.name} (${restored.server.id}) from snapshot ${restored.snapshot.id} "${restored.snapshot.name}"`,
  );
}

async function snapshotsDelete(ctx: Ctx): Promise<number> {
  const snapshotId = parseId(ctx.args[0], 'SNAPSHOT_ID');
  await call(
    ctx.baseUrl,
    ctx.api.DELETE('/api/v1/snapshots/{snapshot_id}/', { params: { path: { snapshot_id: snapshotId } } }),
  );
  if (ctx.values.json) ctx.json({ id: snapshotId, deleted: true });
  else ctx.out(`snapshot ${snapshotId} deleted`);
  return 0;
}

const BACKUP_KINDS = ['manual', 'automatic', 'pre_restore'] as const;

async function backupsList(ctx: Ctx): Promise<number> {
  const serverId = ctx.values.server === undefined ? undefined : parseId(ctx.values.server, '--server');
  const kind = ctx.values.kind as (typeof BACKUP_KINDS)[number] | undefined;
  if (kind !== undefined && !BACKUP_KINDS.includes(kind)) {
    throw new UsageError(`--kind must be ${BACKUP_KINDS.join(', ')}, got "${kind}"`);
  }
  const backups = await allPages((page) =>
    call(
      ctx.baseUrl,
      ctx.api.GET('/api/v1/backups/', {
        params: {
          query: {
            page,
            ...(serverId ? { server_id: serverId } : {}),
            ...(kind ? { kind } : {}),
            ...selectorQuery(ctx),
          },
        },
      }),
    ),
  );
  if (ctx.values.json) {
    ctx.json(backups);
    return 0;
  }
  if (backups.length === 0) {
    ctx.out(serverId ? `no backups of server ${serverId}` : 'no backups');
    return 0;
  }
  ctx.out(
    table(
      [
        'ID',
        'SERVER',
        'NAME',
        'KIND',
        'STATUS',
        'SIZE',
        'STORED',
        'MODE',
        'CREATED',
        'PROTECTED',
        'LABELS',
        'DESCRIPTION',
      ],
      backups.map((b) => [
        b.id,
        `${b.server.name} (${b.server.id})`,
        b.name,
        b.kind,
        snapshotStatus(b),
        mib(b.size_mb),
        mib(b.stored_mb),
        b.mode,
        time(b.created_at),
        protectedCell(b.protection),
        labelsCell(b.labels),
        b.description,
      ]),
    ),
  );
  return 0;
}

async function backupsCreate(ctx: Ctx): Promise<number> {
  const created = await call(ctx.baseUrl, ctx.api.POST('/api/v1/backups/', { body: createBody(ctx) }));
  return reportCreate(
    ctx,
    'backup',
    created,
    () =>
      call(
        ctx.baseUrl,
        ctx.api.GET('/api/v1/backups/{backup_id}/', { params: { path: { backup_id: created.id } } }),
      ),
    (b) => [b?.mode, mib(b?.size_mb), b?.stored_mb !== undefined ? `${mib(b.stored_mb)} stored` : null],
  );
}

async function backupsRestore(ctx: Ctx): Promise<number> {
  const backupId = parseId(ctx.args[0], 'BACKUP_ID');
  const target = ctx.values.server === undefined ? undefined : parseId(ctx.values.server, '--server');
  const restored = await call(
    ctx.baseUrl,
    ctx.api.POST('/api/v1/backups/{backup_id}/restore/', {
      params: { path: { backup_id: backupId } },
      body: target === undefined ? {} : { server_id: target },
    }),
  );
  return reportRestore(
    ctx,
    restored,
    `server ${restored.server.name} (${restored.server.id}) from backup ${restored.backup.id} "${restored.backup.name}"`,
  );
}

async function backupsVerify(ctx: Ctx): Promise<number> {
  const backupId = parseId(ctx.args[0], 'BACKUP_ID');
  const started = await call(
    ctx.baseUrl,
    ctx.api.POST('/api/v1/backups/{backup_id}/verify/', { params: { path: { backup_id: backupId } } }),
  );
  const what = `backup ${started.backup.id} "${started.backup.name}"`;
  if (!ctx.values.wait) {
    if (ctx.values.json) ctx.json(started);
    else {
      ctx.out(`verifying ${what}`);
      ctx.out(started.message);
      ctx.out(`follow it: vps actions get ${started.action_id} --wait`);
    }
    return 0;
  }
  if (!ctx.values.json) ctx.out(`verifying ${what}`);
  const action = await follow(ctx, started.action_id, `verification of ${what}`);
  if (action.status === 'failed') return failed(ctx, `verification of ${what} failed`, action);
  const backup = await call(
    ctx.baseUrl,
    ctx.api.GET('/api/v1/backups/{backup_id}/', { params: { path: { backup_id: backupId } } }),
  );
  if (ctx.values.json) ctx.json(backup);
  else if (backup.status === 'corrupt')
    ctx.io.stderr.write(`error: ${what} is corrupt: ${backup.error ?? ''}\n`);
  else ctx.out(`${what} verified at ${time(backup.verified_at)}`);
  return backup.status === 'corrupt' ? 1 : 0;
}

async function backupsDelete(ctx: Ctx): Promise<number> {
  const backupId = parseId(ctx.args[0], 'BACKUP_ID');
  await call(
    ctx.baseUrl,
    ctx.api.DELETE('/api/v1/backups/{backup_id}/', { params: { path: { backup_id: backupId } } }),
  );
  if (ctx.values.json) ctx.json({ id: backupId, deleted: true });
  else ctx.out(`backup ${backupId} deleted`);
  return 0;
}

/** `snapshots|backups protect|unprotect ID`: sets the delete protection, then shows it as the API answered. */
function changeProtection(kind: 'snapshot' | 'backup', protect: boolean): Command['run'] {
  return async (ctx) => {
    const id = parseId(ctx.args[0], kind === 'snapshot' ? 'SNAPSHOT_ID' : 'BACKUP_ID');
    const body = { delete: protect };
    const changed =
      kind === 'snapshot'
        ? await call(
            ctx.baseUrl,
            ctx.api.POST('/api/v1/snapshots/{snapshot_id}/actions/change_protection/', {
              params: { path: { snapshot_id: id } },
              body,
            }),
          )
        : await call(
            ctx.baseUrl,
            ctx.api.POST('/api/v1/backups/{backup_id}/actions/change_protection/', {
              params: { path: { backup_id: id } },
              body,
            }),
          );
    if (ctx.values.json) ctx.json(changed);
    else
      ctx.out(
        `${kind} ${changed.id} "${changed.name}" ${changed.protection?.delete ? 'is protected against deletion' : 'can be deleted'}`,
      );
    return 0;
  };
}

async function actionsGet(ctx: Ctx): Promise<number> {
  const actionId = parseId(ctx.args[0], 'ACTION_ID');
  const action = ctx.values.wait
    ? await follow(ctx, actionId, `action ${actionId}`)
    : await getAction(ctx, actionId);
  if (ctx.values.json) ctx.json(action);
  else {
    ctx.out(
      keyValues([
        ['action', action.id],
        ['kind', action.kind],
        ['status', `${action.status} ${bar(action.progress)}`],
        ['server', `${action.server.name} (${action.server.id})`],
        // A backup's action names its backup where a snapshot's names its snapshot.
        action.backup
          ? ['backup', `${action.backup.name} (${action.backup.id})`]
          : ['snapshot', action.snapshot ? `${action.snapshot.name} (${action.snapshot.id})` : null],
        ['created', time(action.created_at)],
        ['started', time(action.started_at)],
        ['finished', time(action.finished_at)],
        ['error', action.error ? `${action.error.message ?? ''} (${action.error.code})` : null],
        [
          'safety copy',
          action.safety_copy
            ? `${action.safety_copy.type} ${action.safety_copy.id}, until ${time(action.safety_copy.expires_at)}`
            : null,
        ],
        ['undoes', action.undo_of ?? null],
      ]),
    );
  }
  if (ctx.values.wait && action.status === 'failed')
    return failed(ctx, `action ${actionId} failed`, action, false);
  return 0;
}

async function actionsUndo(ctx: Ctx): Promise<number> {
  const actionId = parseId(ctx.args[0], 'ACTION_ID');
  const undo = await call(
    ctx.baseUrl,
    ctx.api.POST('/api/v1/actions/{action_id}/undo/', { params: { path: { action_id: actionId } } }),
  );
  const what = `restore ${actionId} of server ${undo.server.name} (${undo.server.id})`;
  if (!ctx.values.wait) {
    if (ctx.values.json) ctx.json(undo);
    else {
      ctx.out(`undoing ${what}`);
      ctx.out(`follow it: vps actions get ${undo.id} --wait`);
    }
    return 0;
  }
  if (!ctx.values.json) ctx.out(`undoing ${what}`);
  const action = await follow(ctx, undo.id, `undo of restore ${actionId}`);
  if (ctx.values.json) ctx.json(action);
  if (action.status === 'failed') return failed(ctx, `undo of ${what} failed`, action);
  if (!ctx.values.json) ctx.out(`undid ${what} (undo it in turn: vps actions undo ${undo.id})`);
  return 0;
}

// ---------------------------------------------------------------- following an action

type Action = Schemas['Action'];

function failed(ctx: Ctx, what: string, action: Action, print = true): number {
  if (print || ctx.values.json) {
    const why = action.error ? `: ${action.error.message ?? 'no reason given'} (${action.error.code})` : '';
    ctx.io.stderr.write(`error: ${what}${why}\n`);
  }
  return 1;
}

function getAction(ctx: Ctx, id: number): Promise<Action> {
  return call(
    ctx.baseUrl,
    ctx.api.GET('/api/v1/actions/{action_id}/', { params: { path: { action_id: id } } }),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls the action until it succeeds or fails, drawing its progress on stderr: a bar redrawn in place
 * on a terminal, else one line per change. Ctrl-C stops waiting (the operation goes on) with 130.
 */
async function follow(ctx: Ctx, actionId: number, label: string): Promise<Action> {
  const { stderr } = ctx.io;
  const tty = Boolean(stderr.isTTY);
  const timeoutS = ctx.values.timeout === undefined ? DEFAULT_TIMEOUT_S : Number(ctx.values.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    throw new UsageError(`--timeout must be a positive number of seconds, got "${ctx.values.timeout}"`);
  }
  const intervalMs = Math.max(50, Number(ctx.io.env.VPS_POLL_INTERVAL_MS) || 1000);
  const deadline = Date.now() + timeoutS * 1000;
  let interrupted = false;
  const removeInterrupt = ctx.io.onInterrupt?.(() => {
    interrupted = true;
  });
  let lastLine = '';
  const draw = (a: Action) => {
    const line = `${label}: ${a.kind} ${a.status}`;
    if (tty) stderr.write(`\r\x1b[2K${bar(a.progress)} ${line}`);
    else if (`${line} ${a.progress}` !== lastLine) stderr.write(`${line} ${a.progress}%\n`);
    lastLine = `${line} ${a.progress}`;
  };
  try {
    for (;;) {
      const action = await getAction(ctx, actionId);
      draw(action);
      if (action.status === 'succeeded' || action.status === 'failed') {
        if (tty) stderr.write('\n');
        return action;
      }
      if (Date.now() >= deadline) {
        if (tty) stderr.write('\n');
        throw new ApiError(
          `gave up waiting for action ${actionId} after ${timeoutS} s; it goes on: vps actions get ${actionId} --wait`,
          'timeout',
          null,
        );
      }
      for (let waited = 0; waited < intervalMs && !interrupted; waited += 50) await sleep(50);
      if (interrupted) {
        if (tty) stderr.write('\n');
        throw new Interrupted(actionId);
      }
    }
  } finally {
    removeInterrupt?.();
  }
}

export class Interrupted extends ApiError {
  constructor(actionId: number) {
    super(`interrupted; action ${actionId} goes on: vps actions get ${actionId} --wait`, 'interrupted', null);
  }
}

// ---------------------------------------------------------------- webhooks and events

type WebhookShown = Schemas['Webhook'];

function webhookLines(w: WebhookShown): [string, string | number | null][] {
  return [
    ['webhook', w.id],
    ['url', w.url],
    ['events', w.event_types.length ? w.event_types.join(',') : 'all'],
    ['secret', `${w.secret_prefix}…`],
    ['status', w.status],
    ['created', time(w.created_at)],
    ['failing since', time(w.failing_since)],
    ['last error', w.last_error],
    ['disabled', time(w.disabled_at)],
    ['disabled why', w.disabled_reason],
  ];
}

async function webhooksList(ctx: Ctx): Promise<number> {
  const page = await call(ctx.baseUrl, ctx.api.GET('/api/v1/webhooks/'));
  if (ctx.values.json) ctx.json(page.results);
  else if (page.results.length === 0) ctx.out('no webhooks');
  else
    ctx.out(
      table(
        ['ID', 'URL', 'EVENTS', 'STATUS', 'LAST ERROR'],
        page.results.map((w) => [
          w.id,
          w.url,
          w.event_types.length ? w.event_types.join(',') : 'all',
          w.status,
          w.disabled_reason ?? w.last_error,
        ]),
      ),
    );
  return 0;
}

async function webhooksCreate(ctx: Ctx): Promise<number> {
  if (!ctx.values.url) throw new UsageError('--url is required');
  const types = ctx.values.events
    ?.split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  const created = await call(
    ctx.baseUrl,
    ctx.api.POST('/api/v1/webhooks/', {
      body: { url: ctx.values.url, ...(types ? { event_types: types as Schemas['EventType'][] } : {}) },
    }),
  );
  if (ctx.values.json) ctx.json(created);
  else {
    ctx.out(keyValues(webhookLines(created)));
    ctx.out(`\nsigning secret (shown this once only; verify webhook-signature with it):\n${created.secret}`);
  }
  return 0;
}

async function webhooksGet(ctx: Ctx): Promise<number> {
  const webhookId = parseId(ctx.args[0], 'WEBHOOK_ID');
  const w = await call(
    ctx.baseUrl,
    ctx.api.GET('/api/v1/webhooks/{webhook_id}/', { params: { path: { webhook_id: webhookId } } }),
  );
  if (ctx.values.json) ctx.json(w);
  else ctx.out(keyValues(webhookLines(w)));
  return 0;
}

async function webhooksDelete(ctx: Ctx): Promise<number> {
  const webhookId = parseId(ctx.args[0], 'WEBHOOK_ID');
  await call(
    ctx.baseUrl,
    ctx.api.DELETE('/api/v1/webhooks/{webhook_id}/', { params: { path: { webhook_id: webhookId } } }),
  );
  if (ctx.values.json) ctx.json({ id: webhookId, deleted: true });
  else ctx.out(`webhook ${webhookId} deleted`);
  return 0;
}

async function eventsList(ctx: Ctx): Promise<number> {
  const since = ctx.values.since === undefined ? undefined : parseId(ctx.values.since, '--since');
  const page = await call(
    ctx.baseUrl,
    ctx.api.GET('/api/v1/events/', { params: { query: since ? { since } : {} } }),
  );
  if (ctx.values.json) ctx.json(page.results);
  else if (page.results.length === 0) ctx.out(since ? `no events after ${since}` : 'no events');
  else {
    ctx.out(
      table(
        ['ID', 'TYPE', 'TIME', 'ABOUT'],
        page.results.map((e) => {
          const data = e.data as { id?: number; server?: { id: number } };
          return [
            e.id,
            e.type,
            time(e.timestamp),
            data.id === undefined ? JSON.stringify(e.data) : `#${data.id}`,
          ];
        }),
      ),
    );
    if (page.next) ctx.out(`more: vps events list --since ${page.results.at(-1)!.id}`);
  }
  return 0;
}
