import { Module } from '@nestjs/common';
import { NodesController } from './nodes.controller';
import { NodesService } from './nodes.service';

@Module({ providers: [NodesService], exports: [NodesService] })
export class NodesCoreModule {}

@Module({ imports: [NodesCoreModule], controllers: [NodesController] })
export class NodesModule {}
