import { Injectable } from '@nestjs/common';
import { ProblemException } from '../common/problem';
import { PrismaService } from '../prisma/prisma.service';
import { NODE_NAME } from './dto/create-node.dto';

export interface NodeInput {
  name: string;
  driver: 'libvirt' | 'fake';
  uri?: string;
  snapshotDir: string;
}

/** Hypervisor hosts. Each runs one worker that consumes the queue named after the node. */
@Injectable()
export class NodesService {
  constructor(private readonly prisma: PrismaService) {}

  async create(input: NodeInput) {
    if (!NODE_NAME.test(input.name)) {
      throw new ProblemException({
        status: 400,
        code: 'validation_failed',
        errors: [{ field: 'name', message: 'name must be 1-63 of a-z, 0-9 and "-"' }],
      });
    }
    const existing = await this.prisma.node.findUnique({ where: { name: input.name } });
    if (existing) {
      throw new ProblemException({
        status: 409,
        code: 'conflict',
        params: { what: `node "${input.name}" exists` },
      });
    }
    return this.prisma.node.create({
      data: {
        name: input.name,
        driver: input.driver,
        uri: input.uri ?? 'qemu:///system',
        snapshotDir: input.snapshotDir,
      },
    });
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
