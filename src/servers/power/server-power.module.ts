import { Module } from '@nestjs/common';
import { ActionsModule } from '../../actions/actions.module';
import { JobsCoreModule } from '../../jobs/jobs-core.module';
import { ServerPowerController } from './server-power.controller';
import { ServerPowerService } from './server-power.service';

@Module({
  imports: [JobsCoreModule, ActionsModule],
  controllers: [ServerPowerController],
  providers: [ServerPowerService],
})
export class ServerPowerModule {}
