import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { AuthorizationHeaderStrategy } from './authorization-header.strategy';
import { Principal } from './principal';
import { TokenBatcher } from './token-batcher';

@Injectable()
export class BearerStrategy extends PassportStrategy(AuthorizationHeaderStrategy, 'bearer') {
  constructor(private readonly tokens: TokenBatcher) {
    super();
  }

  async validate(req: Request, token: string): Promise<Principal | false> {
    return (await this.tokens.principalOf(req, token)) ?? false;
  }
}
