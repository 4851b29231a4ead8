import { Module } from '@nestjs/common';
import { AdminServersController, ServersController } from './servers.controller';
import { ServersService } from './servers.service';

@Module({ providers: [ServersService], exports: [ServersService] })
export class ServersCoreModule {}

@Module({ imports: [ServersCoreModule], controllers: [ServersController, AdminServersController] })
export class ServersModule {}
