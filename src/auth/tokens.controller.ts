import { Body, Controller, Delete, Get, HttpCode, Param, Post, UseInterceptors } from '@nestjs/common';
import { Audit, AuditInterceptor } from '../audit/audit.interceptor';
import { apiTime } from '../common/clock';
import { ApiDoc, ApiDocs } from '../openapi/endpoints';
import { PathIdPipe } from '../common/ids';
import { problems, ProblemException } from '../common/problem';
import { Clock } from '../common/clock';
import { ApiTokenService, TokenRecord } from './api-token.service';
import { CurrentPrincipal } from './decorators';
import { CreateTokenDto } from './dto/create-token.dto';
import { isAdmin, Principal } from './principal';

export function tokenView(t: TokenRecord) {
  return {
    id: t.id,
    name: t.name,
    prefix: t.prefix,
    scopes: t.scopes,
    created_at: apiTime(t.createdAt),
    expires_at: apiTime(t.expiresAt),
    last_used_at: apiTime(t.lastUsedAt),
    revoked_at: apiTime(t.revokedAt),
  };
}

/** An account's own API tokens. */
@ApiDocs.tokens()
@Controller('api/v1/tokens')
@UseInterceptors(AuditInterceptor)
export class TokensController {
  constructor(
    private readonly tokens: ApiTokenService,
    private readonly clock: Clock,
  ) {}

  @Get()
  @ApiDoc.tokens.list()
  async list(@CurrentPrincipal() me: Principal) {
    const rows = await this.tokens.list(me.accountId);
    return { count: rows.length, next: null, previous: null, results: rows.map(tokenView) };
  }

  @Post()
  @ApiDoc.tokens.create()
  @Audit('token.create', 'token')
  async create(@CurrentPrincipal() me: Principal, @Body() dto: CreateTokenDto) {
    const scopes = dto.scopes ?? ['read', 'write'];
    if (scopes.includes('admin') && !isAdmin(me)) {
      throw problems.validation([
        { field: 'scopes', message: 'only an admin token can create an admin token' },
      ]);
    }
    const expiresAt = dto.expires_in_days
      ? new Date(this.clock.now().getTime() + dto.expires_in_days * 86_400_000)
      : null;
    const { token, record } = await this.tokens.create({
      accountId: me.accountId,
      name: dto.name,
      scopes,
      expiresAt,
    });
    return { ...tokenView(record), token };
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
