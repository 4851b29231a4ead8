import type { Request } from 'express';
import { Strategy } from 'passport';
import { problems } from '../common/problem';
import { bearerTokenOf, tokenOutsideHeader } from './bearer-token';

type Done = (err: unknown, user?: unknown) => void;
type Verify = (req: Request, token: string, done: Done) => void;

const CHALLENGE = 'Bearer realm="admin.vps.org"';

/**
 * A passport strategy reading the bearer token from the `Authorization` header only. A token sent as
 * an `access_token` query parameter or body member is refused with a 401 saying where it goes, even
 * when the header carries one too: the client is leaking it, and should hear so.
 */
export class AuthorizationHeaderStrategy extends Strategy {
  override name = 'bearer';

  constructor(private readonly verify: Verify) {
    super();
  }

  override authenticate(req: Request): void {
    const misplaced = tokenOutsideHeader(req);
    if (misplaced) {
      this.error(problems.tokenOutsideHeader(misplaced));
      return;
    }
    const token = bearerTokenOf(req.headers.authorization);
    if (token === null) {
      this.fail(CHALLENGE, 401);
      return;
    }
    this.verify(req, token, (err, user) => {
      if (err) this.error(err);
      else if (user) this.success(user);
      else this.fail(CHALLENGE, 401);
    });
  }
}
