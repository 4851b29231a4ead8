/**
 * Whether `e` is a unique-constraint violation: Prisma's P2002, or PostgreSQL's 23505 as node-postgres
 * (and a driver adapter passing it through) reports it.
 */
export function isUniqueViolation(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x && depth < 4; depth++) {
    const code = (x as { code?: unknown }).code;
    if (code === 'P2002' || code === '23505') return true;
    x = (x as { cause?: unknown }).cause;
  }
  return false;
}
