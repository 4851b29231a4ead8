import { Module } from '@nestjs/common';
import { BackupStoreModule } from '../backup-store/backup-store.module';
import { NodesController } from './nodes.controller';
import { NodesService } from './nodes.service';

@Module({ imports: [BackupStoreModule], providers: [NodesService], exports: [NodesService] })
export class NodesCoreModule {}

@Module({ imports: [NodesCoreModule], controllers: [NodesController] })
export class NodesModule {}
