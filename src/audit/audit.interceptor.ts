import { CallHandler, ExecutionContext, Injectable, NestInterceptor, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { Observable, from, throwError } from 'rxjs';
import { catchError, mergeMap } from 'rxjs/operators';
import { redactTokenParameter } from '../auth/bearer-token';
import { Principal } from '../auth/principal';
import { ProblemException } from '../common/problem';
import { requestIdOf } from '../common/request-context';
import { AuditService } from './audit.service';

const AUDIT = 'audit:event';

interface AuditMeta {
  action: string;
  targetType: string;
  /** Request body members copied into `detail` (bounded, see bodyDetail), accepted or refused. */
  bodyFields?: readonly string[];
  /** What else an accepted call records, taken from the handler's response body. */
  detailOf?: (body: never) => Record<string, unknown>;
}

export interface AuditOptions<B> {
  bodyFields?: readonly string[];
  detailOf?: (body: B) => Record<string, unknown>;
}

/**
 * Records this handler's calls in the audit log as `action` on a `targetType`; `bodyFields` copies
 * request members into `detail`, `detailOf` adds to an accepted call's `detail` from its response body.
 */
export const Audit = <B>(action: string, targetType: string, options: AuditOptions<B> = {}) =>
  SetMetadata(AUDIT, { action, targetType, ...options } as AuditMeta);
/** Longest string, and most array items, a body member keeps in an audit row (refused input can be anything). */
const DETAIL_STRING_MAX = 256;
const DETAIL_ITEMS_MAX = 16;

function boundedValue(v: unknown): unknown {
  if (typeof v === 'string') return v.length > DETAIL_STRING_MAX ? `${v.slice(0, DETAIL_STRING_MAX)}…` : v;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return v;
  if (Array.isArray(v))
    return v.slice(0, DETAIL_ITEMS_MAX).map((x) => (typeof x === 'object' ? null : boundedValue(x)));
  return undefined;
}

/** The named members of the request body, each bounded; absent or structured members are left out. */
function bodyDetail(body: unknown, fields: readonly string[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!fields || !body || typeof body !== 'object') return out;
  for (const f of fields) {
    if (!Object.prototype.hasOwnProperty.call(body, f)) continue;
    const v = boundedValue((body as Record<string, unknown>)[f]);
    if (v !== undefined) out[f] = v;
  }
  return out;
}

@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const meta = this.reflector.get<AuditMeta | undefined>(AUDIT, context.getHandler());
    if (!meta) return next.handle();
    const req = context.switchToHttp().getRequest<Request & { user?: Principal }>();
    const res = context.switchToHttp().getResponse<Response>();
    const base = () => ({
      accountId: req.user?.accountId ?? null,
      tokenId: req.user?.tokenId ?? null,
      actor: req.user ? `token:${req.user.tokenId}` : 'anonymous',
      action: meta.action,
      targetType: meta.targetType,
      ip: req.ip ?? null,
      requestId: requestIdOf(req),
    });
    const pathId = Number(req.params?.id) || null;
    return next.handle().pipe(
      mergeMap((body) => {
        const b = (body ?? {}) as { id?: unknown; action_id?: unknown; server?: { id?: unknown } };
        const targetId = pathId ?? (typeof b.id === 'number' ? b.id : null);
        return from(
          this.audit
            .record({
              ...base(),
              targetId,
              outcome: 'accepted',
              statusCode: res.statusCode,
              detail: {
                method: req.method,
                path: redactTokenParameter(req.originalUrl),
                ...bodyDetail(req.body, meta.bodyFields),
                ...(typeof b.action_id === 'number' ? { action_id: b.action_id } : {}),
                ...(req.body && typeof req.body === 'object' && 'server_id' in req.body
                  ? { server_id: (req.body as { server_id: unknown }).server_id }
                  : {}),
                ...(res.getHeader('Idempotent-Replayed') ? { idempotent_replay: true } : {}),
                ...(meta.detailOf ? meta.detailOf(body as never) : {}),
              },
            })
            .then(() => body),
        );
      }),
      catchError((err: unknown) => {
        const status = err instanceof ProblemException ? err.spec.status : 500;
        return from(
          this.audit.record({
            ...base(),
            targetId: pathId,
            outcome: status < 500 ? 'refused' : 'error',
            statusCode: status,
            detail: {
              method: req.method,
              path: redactTokenParameter(req.originalUrl),
              ...bodyDetail(req.body, meta.bodyFields),
              ...(err instanceof ProblemException ? { code: err.spec.code } : {}),
            },
          }),
        ).pipe(mergeMap(() => throwError(() => err)));
      }),
    );
  }
}
