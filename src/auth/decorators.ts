import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Request } from 'express';
import { Principal, Scope } from './principal';

export const IS_PUBLIC = 'auth:isPublic';
export const REQUIRED_SCOPE = 'auth:requiredScope';

/** No token needed (health endpoints). */
export const Public = () => SetMetadata(IS_PUBLIC, true);

/** The scope a token needs for this handler (admin tokens have every scope). */
export const RequireScope = (scope: Scope) => SetMetadata(REQUIRED_SCOPE, scope);

export const CurrentPrincipal = createParamDecorator((_data: unknown, ctx: ExecutionContext): Principal => {
  const req = ctx.switchToHttp().getRequest<Request & { user?: Principal }>();
  if (!req.user) throw new Error('CurrentPrincipal used on a route without authentication');
  return req.user;
});
