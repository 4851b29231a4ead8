import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { hotReadStateOf } from '../read-path/hot-read-state';
import { ApiTokenService } from './api-token.service';
import { AuthorizationHeaderStrategy } from './authorization-header.strategy';
import { Principal } from './principal';

@Injectable()
export class BearerStrategy extends PassportStrategy(AuthorizationHeaderStrategy, 'bearer') {
  constructor(private readonly tokens: ApiTokenService) {
    super();
  }

  /** A request the hot read path has already authenticated (in the same instant) is not looked up twice. */
  async validate(req: Request, token: string): Promise<Principal | false> {
    const done = hotReadStateOf(req);
    if (done) return done.principal;
    return (await this.tokens.authenticate(token)) ?? false;
  }
}
