import { Body, Controller, Param, Post, UseInterceptors } from '@nestjs/common';
import { ActionView } from '../../actions/action.view';
import { Audit, AuditInterceptor } from '../../audit/audit.interceptor';
import { CurrentPrincipal } from '../../auth/decorators';
import { Principal } from '../../auth/principal';
import { PathIdPipe } from '../../common/ids';
import { IdempotencyInterceptor, IdempotencyKeyId } from '../../idempotency/idempotency.interceptor';
import { ApiDoc, ApiDocs } from '../../openapi/endpoints';
import { PowerActionDto } from './dto/power-action.dto';
import { ServerPowerService } from './server-power.service';

/** `servers/{id}/actions/`: start, stop, shut down or reboot a server. */
@ApiDocs.servers()
@Controller('api/v1/servers')
@UseInterceptors(AuditInterceptor)
export class ServerPowerController {
  constructor(private readonly power: ServerPowerService) {}

  @Post(':id/actions')
  @ApiDoc.servers.powerAction()
  @Audit<ActionView>('server.power', 'server', {
    bodyFields: ['type'],
    detailOf: (a) => ({ action_id: a.id }),
  })
  @UseInterceptors(IdempotencyInterceptor)
  async request(
    @CurrentPrincipal() me: Principal,
    @Param('id', new PathIdPipe('server_not_found')) id: number,
    @Body() dto: PowerActionDto,
    @IdempotencyKeyId() idempotencyKeyId?: number,
  ): Promise<ActionView> {
    return this.power.request(me, id, dto.type, idempotencyKeyId);
  }
}
