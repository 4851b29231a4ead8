import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { Request } from 'express';
import { problems } from '../common/problem';
import { IS_PUBLIC, REQUIRED_SCOPE } from './decorators';
import { hasScope, Principal, requiredScope, Scope } from './principal';

/** Every route needs a valid bearer token unless marked @Public(). */
@Injectable()
export class BearerAuthGuard extends AuthGuard('bearer') {
  constructor(private readonly reflector: Reflector) {
    super({ session: false });
  }

  override canActivate(context: ExecutionContext) {
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()])) {
      return true;
    }
    return super.canActivate(context);
  }

  override handleRequest<T>(err: unknown, user: T | false): T {
    if (err) throw err;
    if (!user) throw problems.unauthorized();
    return user;
  }
}

/** Checks the token's scopes: `read` for GET by default, `write` for changes, `admin` where required. */
@Injectable()
export class ScopeGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()])) {
      return true;
    }
    const req = context.switchToHttp().getRequest<Request & { user?: Principal }>();
    const required = requiredScope(
      req.method,
      this.reflector.getAllAndOverride<Scope | undefined>(REQUIRED_SCOPE, [
        context.getHandler(),
        context.getClass(),
      ]),
    );
    if (!req.user || !hasScope(req.user, required)) throw problems.forbidden(required);
    return true;
  }
}
