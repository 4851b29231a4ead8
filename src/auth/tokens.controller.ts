import { Body, Controller, Delete, Get, HttpCode, Param, Post, UseInterceptors } from '@nestjs/common';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { PathIdPipe } from '../common/ids';
import { wholePage } from '../common/pagination';
import { ProblemException } from '../common/problem';
import { ApiTokenService } from './api-token.service';
import { CurrentPrincipal } from './decorators';
import { CreateTokenDto } from './dto/create-token.dto';
import { Principal } from './principal';
import { tokenAuditDetail, tokenCreatedView, tokenView } from './token.view';

/** An account's own API tokens. */
@ApiDocs.tokens()
@Controller('api/v1/tokens')
@UseInterceptors(AuditInterceptor)
export class TokensController {
  constructor(private readonly tokens: ApiTokenService) {}

  @Get()
  @ApiDoc.tokens.list()
  async list(@CurrentPrincipal() me: Principal) {
    const rows = await this.tokens.list(me.accountId);
    return wholePage(rows.map(tokenView));
  }

  @Post()
  @ApiDoc.tokens.create()
  @Audit('token.create', 'token', { detailOf: tokenAuditDetail })
  async create(@CurrentPrincipal() me: Principal, @Body() dto: CreateTokenDto) {
    const { token, record } = await this.tokens.createFromToken(me, {
      name: dto.name,
      scopes: dto.scopes,
      expiresInDays: dto.expires_in_days,
    });
    return tokenCreatedView(record, token);
  }

  @Delete(':id')
  @ApiDoc.tokens.revoke()
  @HttpCode(204)
  @Audit('token.revoke', 'token')
  async revoke(
    @CurrentPrincipal() me: Principal,
    @Param('id', new PathIdPipe('token_not_found')) id: number,
  ) {
    const revoked = await this.tokens.revoke({ id }, me.accountId);
    if (!revoked) throw new ProblemException({ status: 404, code: 'token_not_found' });
  }
}
