import { PipeTransform, Injectable } from '@nestjs/common';
import { ProblemCode, ProblemException } from './problem';

export const MAX_ID = 2_147_483_647;

/** An integer id in [1, 2^31-1] written in plain decimal digits, or null. */
export function parseId(raw: unknown): number | null {
  if (typeof raw !== 'string' || !/^[1-9]\d{0,9}$/.test(raw)) return null;
  const n = Number(raw);
  return n <= MAX_ID ? n : null;
}

/**
 * Path ids: anything that cannot be an id names nothing, so it is the resource's own 404
 * (`/snapshots/abc/` is "snapshot does not exist", like a well-formed id that does not exist).
 */
@Injectable()
export class PathIdPipe implements PipeTransform<string, number> {
  constructor(private readonly notFoundCode: Extract<ProblemCode, `${string}not_found`>) {}

  transform(value: string): number {
    const id = parseId(value);
    if (id === null) throw new ProblemException({ status: 404, code: this.notFoundCode });
    return id;
  }
}
