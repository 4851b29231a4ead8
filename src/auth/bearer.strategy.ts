import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { Strategy } from 'passport-http-bearer';
import { hotReadStateOf } from '../read-path/hot-read-state';
import { ApiTokenService } from './api-token.service';
import { Principal } from './principal';

@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, 'bearer') {
  constructor(private readonly tokens: ApiTokenService) {
    super({ passReqToCallback: true });
  }

  /** A request the hot read path has already authenticated (in the same instant) is not looked up twice. */
  async validate(req: Request, token: string): Promise<Principal | false> {
    const done = hotReadStateOf(req);
    if (done) return done.principal;
    return (await this.tokens.authenticate(token)) ?? false;
  }
}
