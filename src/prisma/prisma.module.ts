import { Global, Module } from '@nestjs/common';
import { PrismaService } from './prisma.service';
import { ReadStatements } from './read-statements';

@Global()
@Module({ providers: [PrismaService, ReadStatements], exports: [PrismaService, ReadStatements] })
export class PrismaModule {}
