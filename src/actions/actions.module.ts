import { Module } from '@nestjs/common';
import { ActionReads } from './action-reads';
import { ActionsController } from './actions.controller';
import { ActionsService } from './actions.service';

@Module({
  controllers: [ActionsController],
  providers: [ActionsService, ActionReads],
  exports: [ActionsService, ActionReads],
})
export class ActionsModule {}
