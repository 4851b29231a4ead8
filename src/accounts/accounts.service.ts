import { Injectable } from '@nestjs/common';
import { ProblemException } from '../common/problem';
import { PrismaService } from '../prisma/prisma.service';

export const ACCOUNT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

@Injectable()
export class AccountsService {
  constructor(private readonly prisma: PrismaService) {}

  async create(name: string) {
    if (!ACCOUNT_NAME.test(name)) {
      throw new ProblemException({
        status: 400,
        code: 'validation_failed',
        errors: [
          {
            field: 'name',
            message: 'name must be 1-64 of a-z, 0-9, ".", "_", "-", starting with a letter or digit',
          },
        ],
      });
    }
    const existing = await this.prisma.account.findUnique({ where: { name } });
    if (existing)
      throw new ProblemException({
        status: 409,
        code: 'conflict',
        params: { what: `account "${name}" exists` },
      });
    return this.prisma.account.create({ data: { name } });
  }

  findByName(name: string) {
    return this.prisma.account.findUnique({ where: { name } });
  }

  async requireByName(name: string) {
    const account = await this.findByName(name);
    if (!account) throw new ProblemException({ status: 404, code: 'account_not_found' });
    return account;
  }

  list() {
    return this.prisma.account.findMany({
      orderBy: { id: 'asc' },
      select: { id: true, name: true, createdAt: true, _count: { select: { servers: true, tokens: true } } },
    });
  }
}
