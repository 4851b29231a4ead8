import { Injectable } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service';
import { ApiTokenService } from '../auth/api-token.service';
import { AuditService } from '../audit/audit.service';
import { SCOPES, Scope } from '../auth/principal';
import { tokenAuditDetail, tokenView } from '../auth/token.view';
import { Clock, apiTime } from '../common/clock';
import { parseId } from '../common/ids';
import { NodesService } from '../nodes/nodes.service';
import { ServersService } from '../servers/servers.service';
import { parseCommandLine, UsageError } from '../cli-kit/command-line';
import { recordTable as table } from '../cli-kit/table';
import { BACKUP_USAGE, BackupCliCommands } from './backup-commands';
import { WEBHOOK_USAGE, WebhookCliCommands } from './webhook-commands';
import { DomainInspectors } from './domain-inspector';

export const USAGE = `Operator CLI: npm run --silent cli -- <command>

  account create <name> [--if-missing]                    prints the account id
  account list
  token create --account <name> [--name N] [--scopes read,write] [--admin] [--expires-in 30d]
                                                          prints the token (shown only once)
  token revoke <token-id-or-prefix>
  token check <token>                                     exit 0 when the token is valid (prints its account id)
  node create <name> --driver libvirt|fake [--uri qemu:///system] [--snapshot-dir DIR]
              [--image-root DIR]... [--backup-store NAME] [--if-missing]
                                                          prints the node id
  node set-backup-store <name> <store>                    where the node's next backups go
  node list
  server create --account <name> --node <name> --name <server-name> [--domain D] [--domain-uuid UUID]
                [--disk PATH] [--status running|stopped] [--if-missing]
                                                          prints the server id
  server import --account <name> --node <name> --domain <libvirt-domain> [--name <server-name>] [--if-missing]
                                                          reads the UUID and disk from libvirt; prints the id

  --uri: qemu:///system, qemu:///session, qemu+ssh://[user@]host[:port]/system or
  qemu+tls://host[:port]/system, without query parameters.
  --image-root (repeatable): directories the node's disks may live in (default /var/lib/libvirt/images);
  --snapshot-dir (default /var/lib/admin-vps/snapshots/<node>) must lie apart from them.
  --backup-store: a store of the configuration (BACKUP_DIR is "default", BACKUP_STORES the others).
  Backups already written stay in the store they were written to.
  --domain-uuid: without it, server create looks the domain up on a libvirt node (it must exist with
  that name); given, it is recorded and the worker checks it before the first operation.

  --if-missing: when the account / node / server (same node and domain) exists, print its id instead
  of failing (for idempotent provisioning scripts).
  server list
${BACKUP_USAGE}${WEBHOOK_USAGE}`;

type Values = Record<string, unknown>;

function required(values: Values, key: string): string {
  const v = values[key];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${key} <value> is required`);
  return v;
}

const text = { type: 'string' } as const;
const flag = { type: 'boolean' } as const;

export function parseDuration(text: string): number {
  const m = /^(\d+)([smhdw])$/.exec(text);
  if (!m || Number(m[1]) === 0)
    throw new UsageError(`--expires-in must look like 30d, 12h, 90m or 2w, got "${text}"`);
  const unit = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  return Number(m[1]) * unit * 1000;
}

@Injectable()
export class CliCommands {
  constructor(
    private readonly accounts: AccountsService,
    private readonly tokens: ApiTokenService,
    private readonly nodes: NodesService,
    private readonly servers: ServersService,
    private readonly clock: Clock,
    private readonly audit: AuditService,
    private readonly inspectors: DomainInspectors,
    private readonly backups: BackupCliCommands,
    private readonly webhooks: WebhookCliCommands,
  ) {}

  async run(argv: string[]): Promise<string> {
    const [noun, verb, ...rest] = argv;
    const key = `${noun} ${verb ?? ''}`.trim();
    if (noun === 'backups') return this.backups.run(verb ?? '', rest);
    if (noun === 'webhooks') return this.webhooks.run(verb ?? '', rest);
    switch (key) {
      case 'account create': {
        const { positionals: positional, values: flags } = parseCommandLine(rest, { 'if-missing': flag });
        if (positional.length !== 1) throw new UsageError('account create takes exactly one <name>');
        const existing = flags['if-missing'] ? await this.accounts.findByName(positional[0]) : null;
        return String((existing ?? (await this.accounts.create(positional[0]))).id);
      }
      case 'account list': {
        const rows = await this.accounts.list();
        return table(
          rows.map((a) => ({
            id: a.id,
            name: a.name,
            servers: a._count.servers,
            tokens: a._count.tokens,
            created: apiTime(a.createdAt),
          })),
        );
      }
      case 'token create':
        return this.tokenCreate(rest);
      case 'token revoke': {
        const { positionals: positional } = parseCommandLine(rest, {});
        if (positional.length !== 1)
          throw new UsageError('token revoke takes exactly one <token-id-or-prefix>');
        const arg = positional[0];
        const id = parseId(arg);
        const revoked = await this.tokens.revoke(id !== null ? { id } : { prefix: arg }, null);
        if (!revoked) throw new Error(`no token with id or prefix "${arg}"`);
        await this.audit.record({
          accountId: revoked.accountId,
          tokenId: null,
          actor: 'cli',
          action: 'token.revoke',
          targetType: 'token',
          targetId: revoked.id,
          outcome: 'accepted',
        });
        return '';
      }
      case 'token check': {
        const { positionals: positional } = parseCommandLine(rest, {});
        if (positional.length !== 1) throw new UsageError('token check takes exactly one <token>');
        const principal = await this.tokens.authenticate(positional[0]);
        if (!principal) throw new Error('token is not valid (unknown, expired or revoked)');
        return String(principal.accountId);
      }
      case 'node create':
        return this.nodeCreate(rest);
      case 'node set-backup-store': {
        if (rest.length !== 2) throw new UsageError('node set-backup-store takes <name> <store>');
        const { before, node } = await this.nodes.setBackupStore({ name: rest[0] }, rest[1]);
        await this.auditCli('node.update', 'node', node.id, {
          name: node.name,
          backup_store: { from: before.backupStore, to: node.backupStore },
        });
        return node.backupStore;
      }
      case 'node list': {
        const rows = await this.nodes.list();
        return table(
          rows.map((n) => ({
            id: n.id,
            name: n.name,
            driver: n.driver,
            uri: n.uri,
            snapshot_dir: n.snapshotDir,
            image_roots: n.imageRoots.join(' '),
            backup_store: n.backupStore,
          })),
        );
      }
      case 'server create':
        return this.serverCreate(rest);
      case 'server import':
        return this.serverImport(rest);
      case 'server list': {
        const rows = await this.servers.listAll();
        return table(
          rows.map((s) => ({
            id: s.id,
            name: s.name,
            account: s.account.name,
            node: s.node.name,
            status: s.status,
            domain: s.domain,
            domain_uuid: s.domainUuid ?? '(pinned at first use)',
            disk: s.diskPath,
          })),
        );
      }
      default:
        throw new UsageError(`unknown command "${key}"`);
    }
  }

  private async tokenCreate(args: string[]): Promise<string> {
    const { positionals: positional, values: flags } = parseCommandLine(args, {
      account: text,
      name: text,
      scopes: text,
      admin: flag,
      'expires-in': text,
    });
    if (positional.length) throw new UsageError(`unexpected argument "${positional[0]}"`);
    const account = await this.accounts.requireByName(required(flags, 'account'));
    const scopeText = flags.scopes ?? 'read,write';
    const scopes = scopeText.split(',').map((s) => s.trim()) as Scope[];
    for (const s of scopes)
      if (!SCOPES.includes(s)) throw new UsageError(`unknown scope "${s}" (known: ${SCOPES.join(', ')})`);
    if (flags.admin) scopes.push('admin');
    const expiresIn = flags['expires-in'];
    const expiresAt = expiresIn ? new Date(this.clock.now().getTime() + parseDuration(expiresIn)) : null;
    const name = flags.name ?? (flags.admin ? 'admin token' : 'cli token');
    const { token, record } = await this.tokens.createAsOperator({
      accountId: account.id,
      name,
      scopes,
      expiresAt,
    });
    await this.audit.record({
      accountId: account.id,
      tokenId: null,
      actor: 'cli',
      action: 'token.create',
      targetType: 'token',
      targetId: record.id,
      outcome: 'accepted',
      detail: tokenAuditDetail(tokenView(record)),
    });
    return token;
  }

  private async nodeCreate(args: string[]): Promise<string> {
    const { positionals: positional, values: flags } = parseCommandLine(args, {
      driver: text,
      uri: text,
      'snapshot-dir': text,
      'backup-store': text,
      'if-missing': flag,
      'image-root': { type: 'string', multiple: true },
    });
    if (positional.length !== 1) throw new UsageError('node create takes exactly one <name>');
    const existingNode = flags['if-missing'] ? await this.nodes.findByName(positional[0]) : null;
    if (existingNode) return String(existingNode.id);
    const driver = required(flags, 'driver');
    if (driver !== 'libvirt' && driver !== 'fake') throw new UsageError('--driver must be libvirt or fake');
    const node = await this.nodes.create({
      name: positional[0],
      driver,
      uri: flags.uri,
      snapshotDir: flags['snapshot-dir'] ?? `/var/lib/admin-vps/snapshots/${positional[0]}`,
      imageRoots: flags['image-root'],
      backupStore: flags['backup-store'],
    });
    await this.auditCli('node.create', 'node', node.id, {
      name: node.name,
      driver: node.driver,
      uri: node.uri,
      snapshot_dir: node.snapshotDir,
      image_roots: node.imageRoots,
      backup_store: node.backupStore,
    });
    return String(node.id);
  }

  private async serverCreate(args: string[]): Promise<string> {
    const { positionals: positional, values: flags } = parseCommandLine(args, {
      account: text,
      node: text,
      name: text,
      domain: text,
      'domain-uuid': text,
      disk: text,
      status: text,
      'if-missing': flag,
    });
    if (positional.length) throw new UsageError(`unexpected argument "${positional[0]}"`);
    const account = await this.accounts.requireByName(required(flags, 'account'));
    const node = await this.nodes.requireByName(required(flags, 'node'));
    const name = required(flags, 'name');
    const domain = flags.domain ?? name;
    const existing = flags['if-missing'] ? await this.servers.findByDomain(node.id, domain) : null;
    if (existing) return String(existing.id);
    const status = flags.status ?? 'running';
    if (status !== 'running' && status !== 'stopped')
      throw new UsageError('--status must be running or stopped');
    const server = await this.servers.create({
      accountId: account.id,
      nodeId: node.id,
      name,
      domain,
      domainUuid: flags['domain-uuid'],
      diskPath: flags.disk ?? `${node.imageRoots[0]}/${domain}.qcow2`,
      status,
      // A libvirt node is asked which domain has the name (it must exist); a fake node's worker pins it.
      resolveDomainUuid:
        node.driver === 'libvirt' ? () => this.inspectors.forNode(node).uuidOf(domain) : undefined,
    });
    await this.auditServerCreate(server, account.id);
    return String(server.id);
  }

  private async serverImport(args: string[]): Promise<string> {
    const { positionals: positional, values: flags } = parseCommandLine(args, {
      account: text,
      node: text,
      domain: text,
      name: text,
      'if-missing': flag,
    });
    if (positional.length) throw new UsageError(`unexpected argument "${positional[0]}"`);
    const account = await this.accounts.requireByName(required(flags, 'account'));
    const node = await this.nodes.requireByName(required(flags, 'node'));
    const domain = required(flags, 'domain');
    const existing = flags['if-missing'] ? await this.servers.findByDomain(node.id, domain) : null;
    if (existing) return String(existing.id);
    if (node.driver !== 'libvirt')
      throw new Error(`node "${node.name}" uses the ${node.driver} driver; import needs libvirt`);
    // A name virsh would misread is refused before libvirt is asked anything about it.
    this.servers.checkDomainName(domain);
    const found = await this.inspectors.forNode(node).inspect(domain);
    const server = await this.servers.create({
      accountId: account.id,
      nodeId: node.id,
      name: flags.name ?? domain,
      domain,
      domainUuid: found.domainUuid,
      diskPath: found.diskPath,
      status: found.status,
    });
    await this.auditServerCreate(server, account.id);
    return String(server.id);
  }

  private auditServerCreate(
    server: {
      id: number;
      nodeId: number;
      name: string;
      domain: string;
      domainUuid: string | null;
      diskPath: string;
    },
    accountId: number,
  ): Promise<void> {
    return this.auditCli(
      'server.create',
      'server',
      server.id,
      {
        account_id: accountId,
        node_id: server.nodeId,
        name: server.name,
        domain: server.domain,
        domain_uuid: server.domainUuid,
        disk_path: server.diskPath,
      },
      accountId,
    );
  }

  /** An operator's change made through the CLI, in the audit log as the API's are. */
  private auditCli(
    action: string,
    targetType: string,
    targetId: number,
    detail: Record<string, unknown>,
    accountId: number | null = null,
  ): Promise<void> {
    return this.audit.record({
      accountId,
      tokenId: null,
      actor: 'cli',
      action,
      targetType,
      targetId,
      outcome: 'accepted',
      detail,
    });
  }
}
