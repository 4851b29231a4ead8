import { Module } from '@nestjs/common';
import { JobQueue } from './job-queue';
import { OpenOperations } from './open-operations';

@Module({ providers: [OpenOperations, JobQueue], exports: [JobQueue, OpenOperations] })
export class JobsCoreModule {}
