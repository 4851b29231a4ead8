import { Controller, Get, Param } from '@nestjs/common';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { CurrentPrincipal } from '../auth/decorators';
import { Principal } from '../auth/principal';
import { PathIdPipe } from '../common/ids';
import { ActionsService } from './actions.service';

/** Every long operation (create, restore, delete) as a pollable resource. */
@ApiDocs.actions()
@Controller('api/v1/actions')
export class ActionsController {
  constructor(private readonly actions: ActionsService) {}

  @Get(':id')
  @ApiDoc.actions.get()
  get(@CurrentPrincipal() me: Principal, @Param('id', new PathIdPipe('action_not_found')) id: number) {
    return this.actions.get(me, id);
  }
}
