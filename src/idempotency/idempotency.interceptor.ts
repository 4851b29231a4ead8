import {
  CallHandler,
  createParamDecorator,
  ExecutionContext,
  HttpStatus,
  Injectable,
  NestInterceptor,
} from '@nestjs/common';
import { HTTP_CODE_METADATA } from '@nestjs/common/constants';
import type { Request, Response } from 'express';
import { from, Observable, of, throwError } from 'rxjs';
import { catchError, mergeMap } from 'rxjs/operators';
import { Principal } from '../auth/principal';
import { problems } from '../common/problem';
import { IDEMPOTENCY_KEY_SHAPE, IdempotencyService, requestFingerprint } from './idempotency.service';

type IdemRequest = Request & { user?: Principal; idempotencyKeyId?: number };

/**
 * `Idempotency-Key` on POST create, restore and change_protection (an addition to the published contract). Without the header nothing changes.
 * With it: the first request runs and its response is stored; a retry with the same key and request
 * gets that response again (`Idempotent-Replayed: true`) and starts nothing; another request with the
 * same key is 400 `idempotency_key_reused`.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(private readonly idempotency: IdempotencyService) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<IdemRequest>();
    const res = context.switchToHttp().getResponse<Response>();
    const header = req.headers['idempotency-key'];
    if (header === undefined || !req.user) return next.handle();
    if (typeof header !== 'string' || !IDEMPOTENCY_KEY_SHAPE.test(header)) {
      throw problems.validation([
        { field: 'Idempotency-Key', message: 'Idempotency-Key must be 1-255 visible ASCII characters' },
      ]);
    }
    const routePath = (req.route as { path?: string } | undefined)?.path ?? req.path;
    const fingerprint = requestFingerprint(
      req.method,
      `${routePath}:${JSON.stringify(req.params)}`,
      req.body ?? {},
    );
    const statusCode =
      (Reflect.getMetadata(HTTP_CODE_METADATA, context.getHandler()) as number | undefined) ??
      (req.method === 'POST' ? HttpStatus.CREATED : HttpStatus.OK);

    return from(this.idempotency.claim(req.user.accountId, header, fingerprint)).pipe(
      mergeMap((claim) => {
        if (claim.kind === 'replay') {
          res.setHeader('Idempotent-Replayed', 'true');
          return of(claim.body);
        }
        req.idempotencyKeyId = claim.keyId;
        return next.handle().pipe(
          mergeMap((body) => from(this.idempotency.complete(claim.keyId, statusCode, body).then(() => body))),
          catchError((err: unknown) =>
            from(this.idempotency.release(claim.keyId).catch(() => undefined)).pipe(
              mergeMap(() => throwError(() => err)),
            ),
          ),
        );
      }),
    );
  }
}

/** The claimed Idempotency-Key record of this request, if it carried one. */
export const IdempotencyKeyId = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): number | undefined =>
    ctx.switchToHttp().getRequest<IdemRequest>().idempotencyKeyId,
);
