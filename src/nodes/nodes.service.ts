import { Injectable } from '@nestjs/common';
import { FieldError, ProblemException, problems } from '../common/problem';
import { DEFAULT_IMAGE_ROOTS, nodeLayoutProblems } from '../hypervisor/host-paths';
import { libvirtUriProblem } from '../hypervisor/libvirt/connection-uri';
import { isUniqueViolation } from '../prisma/database-errors';
import { BackupStoreRegistry } from '../backup-store/backup-store.registry';
import { DEFAULT_BACKUP_STORE } from '../config/backup-stores';
import { PrismaService } from '../prisma/prisma.service';
import { DEFAULT_NODE_URI, NODE_NAME, NODE_NAME_MESSAGE } from './dto/create-node.dto';

export interface NodeInput {
  name: string;
  driver: 'libvirt' | 'fake';
  uri?: string;
  snapshotDir: string;
  /** Default DEFAULT_IMAGE_ROOTS. */
  imageRoots?: readonly string[];
  /** A configured backup store's name; default `default`. */
  backupStore?: string;
}

/** Hypervisor hosts. Each runs one worker that consumes the queue named after the node. */
@Injectable()
export class NodesService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly backupStores: BackupStoreRegistry,
  ) {}

  /** A node may only name a store this deployment configures (the same configuration on every process). */
  private backupStoreProblem(name: string): FieldError | null {
    if (this.backupStores.isKnown(name)) return null;
    return {
      field: 'backup_store',
      message: `backup_store must be a configured store: ${this.backupStores.names().join(', ')}`,
    };
  }

  /**
   * Registers a node (admin API and CLI alike): its name, a connection URI of the accepted forms and a
   * file layout whose rules are in host-paths.ts. Every problem is one 400 naming its fields.
   */
  async create(input: NodeInput) {
    const uri = input.uri ?? DEFAULT_NODE_URI;
    const imageRoots = [...(input.imageRoots ?? DEFAULT_IMAGE_ROOTS)];
    const errors: FieldError[] = [];
    if (!NODE_NAME.test(input.name)) errors.push({ field: 'name', message: NODE_NAME_MESSAGE });
    const uriProblem = libvirtUriProblem(uri);
    if (uriProblem) errors.push({ field: 'uri', message: uriProblem });
    errors.push(...nodeLayoutProblems({ imageRoots, snapshotDir: input.snapshotDir }));
    const backupStore = input.backupStore ?? DEFAULT_BACKUP_STORE;
    const storeProblem = this.backupStoreProblem(backupStore);
    if (storeProblem) errors.push(storeProblem);
    if (errors.length) throw problems.validation(errors);
    const exists = () =>
      new ProblemException({
        status: 409,
        code: 'conflict',
        params: { what: `node "${input.name}" exists` },
      });
    if (await this.prisma.node.findUnique({ where: { name: input.name } })) throw exists();
    try {
      return await this.prisma.node.create({
        data: {
          name: input.name,
          driver: input.driver,
          uri,
          snapshotDir: input.snapshotDir,
          imageRoots,
          backupStore,
        },
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw exists(); // registered by someone else meanwhile
      throw e;
    }
  }

  /**
   * Point a node's future backups at another configured store. Backups already written stay where they
   * are (each backup records its store), so this never moves or loses data.
   */
  async setBackupStore(node: { id: number } | { name: string }, backupStore: string) {
    const problem = this.backupStoreProblem(backupStore);
    if (problem) throw problems.validation([problem]);
    const found = await this.prisma.node.findUnique({ where: node });
    if (!found) throw new ProblemException({ status: 404, code: 'node_not_found' });
    const updated = await this.prisma.node.update({ where: { id: found.id }, data: { backupStore } });
    return { before: found, node: updated };
  }

  list() {
    return this.prisma.node.findMany({ orderBy: { id: 'asc' } });
  }

  findByName(name: string) {
    return this.prisma.node.findUnique({ where: { name } });
  }

  async requireByName(name: string) {
    const node = await this.findByName(name);
    if (!node) throw new ProblemException({ status: 404, code: 'node_not_found' });
    return node;
  }
}
