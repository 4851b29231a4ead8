import { Controller, HttpCode, Param, Post, UseInterceptors } from '@nestjs/common';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CurrentPrincipal } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { PathIdPipe } from '../common/ids';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { IdempotencyInterceptor, IdempotencyKeyId } from '../idempotency/idempotency.interceptor';
import { RestoreUndoService } from './restore-undo.service';

/** Undo of a restore (restore-undo.service.ts). */
@ApiDocs.actions()
@Controller('api/v1/actions')
@UseInterceptors(AuditInterceptor)
export class RestoreUndoController {
  constructor(private readonly undos: RestoreUndoService) {}

  @Post(':id/undo')
  @ApiDoc.actions.undo()
  @HttpCode(201)
  @Audit('restore.undo', 'action')
  @UseInterceptors(IdempotencyInterceptor)
  undo(
    @CurrentPrincipal() me: Principal,
    @Param('id', new PathIdPipe('action_not_found')) id: number,
    @IdempotencyKeyId() idempotencyKeyId?: number,
  ) {
    return this.undos.undo(me, id, idempotencyKeyId);
  }
}
