/** Rows for tests, written straight to the database (the same shapes the CLI and admin API write). */
import { hashToken, generateToken, displayPrefix } from '../../src/auth/token-codec';
import { Scope } from '../../src/auth/principal';
import { PrismaService } from '../../src/prisma/prisma.service';
import { DEFAULT_IMAGE_ROOTS } from '../../src/hypervisor/host-paths';

let seq = 0;
const unique = (p: string) => `${p}-${process.pid}-${++seq}`;

export async function createAccount(prisma: PrismaService, name = unique('acct')) {
  return prisma.account.create({ data: { name } });
}

export async function createToken(
  prisma: PrismaService,
  accountId: number,
  opts: { scopes?: Scope[]; expiresAt?: Date | null; revokedAt?: Date | null } = {},
) {
  const token = generateToken();
  const row = await prisma.apiToken.create({
    data: {
      accountId,
      name: 'test',
      prefix: displayPrefix(token),
      hash: hashToken(token),
      scopes: opts.scopes ?? ['read', 'write'],
      expiresAt: opts.expiresAt ?? null,
      revokedAt: opts.revokedAt ?? null,
    },
  });
  return { token, row };
}

export async function createNode(
  prisma: PrismaService,
  opts: { name?: string; driver?: 'fake' | 'libvirt'; snapshotDir?: string; imageRoots?: string[] } = {},
) {
  return prisma.node.create({
    data: {
      name: opts.name ?? unique('node'),
      driver: opts.driver ?? 'fake',
      snapshotDir: opts.snapshotDir ?? '/tmp/vps-fake-snapshots',
      imageRoots: opts.imageRoots ?? [...DEFAULT_IMAGE_ROOTS],
    },
  });
}

export async function createServer(
  prisma: PrismaService,
  accountId: number,
  nodeId: number,
  opts: {
    name?: string;
    status?: 'running' | 'stopped' | 'restoring';
    domain?: string;
    domainUuid?: string | null;
    diskPath?: string;
  } = {},
) {
  const name = opts.name ?? unique('web-server');
  const domain = opts.domain ?? unique('dom');
  return prisma.server.create({
    data: {
      accountId,
      nodeId,
      name,
      status: opts.status ?? 'running',
      domain,
      domainUuid: opts.domainUuid ?? null,
      // Unique per node, as the database requires: named after the (unique) domain.
      diskPath: opts.diskPath ?? `${DEFAULT_IMAGE_ROOTS[0]}/${domain}.qcow2`,
    },
  });
}

/** An account with a read/write token and one server on a fake node: the common starting point. */
export async function createTenant(
  prisma: PrismaService,
  nodeId: number,
  opts: { serverStatus?: 'running' | 'stopped' } = {},
) {
  const account = await createAccount(prisma);
  const { token } = await createToken(prisma, account.id);
  const server = await createServer(prisma, account.id, nodeId, { status: opts.serverStatus });
  return { account, token, server, auth: { Authorization: `Bearer ${token}` } };
}

/** A snapshot row as a finished create leaves it (a 4 KiB stopped-consistency copy), to restore from. */
export async function createCompletedSnapshot(
  prisma: Pick<PrismaService, 'snapshot'>,
  where: { accountId: number; serverId: number },
  name = 'base',
) {
  return prisma.snapshot.create({
    data: {
      ...where,
      name,
      status: 'completed',
      progress: 100,
      sizeBytes: 4096n,
      consistency: 'stopped',
      completedAt: new Date(),
    },
  });
}
