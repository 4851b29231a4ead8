import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { PassportModule } from '@nestjs/passport';
import { ApiTokenService } from './api-token.service';
import { BearerAuthGuard, ScopeGuard } from './auth.guards';
import { BearerStrategy } from './bearer.strategy';
import { TokensController } from './tokens.controller';
import { TokenStore } from './token-store';
import { RateLimitGuard } from '../rate-limit/rate-limit.guard';
import { RateLimiter } from '../rate-limit/rate-limiter';
import { RateLimitCounter } from '../rate-limit/rate-limit-counter';
import { TokenBatcher } from './token-batcher';

@Module({
  imports: [PassportModule],
  controllers: [TokensController],
  providers: [
    ApiTokenService,
    TokenStore,
    RateLimiter,
    RateLimitCounter,
    TokenBatcher,
    BearerStrategy,
    { provide: APP_GUARD, useClass: BearerAuthGuard },
    { provide: APP_GUARD, useClass: ScopeGuard },
    // After authentication: limits are per token.
    { provide: APP_GUARD, useClass: RateLimitGuard },
  ],
  exports: [ApiTokenService, RateLimiter, RateLimitCounter, TokenBatcher],
})
export class AuthModule {}

/** Token management without the HTTP guards (CLI). */
@Module({ providers: [ApiTokenService, TokenStore], exports: [ApiTokenService] })
export class TokensCoreModule {}
