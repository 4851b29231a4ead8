/**
 * What a database error means, wherever it is met: the HTTP filter maps these kinds to problems, and
 * services use them to decide whether to retry, fall back or answer a conflict.
 */

const DB_UNREACHABLE_CODES = new Set([
  'P1001',
  'P1002',
  'P1008',
  'P1017',
  'P2024',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  '57P01',
  '57P03',
]);
const DB_UNREACHABLE_TEXT =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|Can't reach database|Connection terminated|connection timeout|timeout exceeded when trying to connect|the database system is (starting up|shutting down)|terminating connection|Client has encountered a connection error|DatabaseNotReachable/i;

/** Whether an error means PostgreSQL could not be reached (then the answer is 503, not 500). */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const x = e as { name?: string; code?: unknown; message?: unknown; cause?: unknown };
    if (typeof x.code === 'string' && DB_UNREACHABLE_CODES.has(x.code)) return true;
    if (x.name === 'PrismaClientInitializationError') return true;
    if (typeof x.message === 'string' && DB_UNREACHABLE_TEXT.test(x.message)) return true;
    e = x.cause;
  }
  return false;
}

/**
 * Prisma's transaction manager (code P2028) when an interactive transaction got no pool connection within
 * `maxWait` ("Unable to start a transaction in the given time", `PrismaClientKnownRequestError`, thrown
 * once the connection finally arrives, then rolled back), or was rolled back at its `timeout` and its next
 * query refused ("… cannot be executed on an expired transaction"). Other P2028 errors (a transaction not
 * found, already closed) are bugs and stay 500.
 */
const TX_TIMEOUT_TEXT =
  /Unable to start a transaction in the given time|cannot be executed on an expired transaction/;
/**
 * Waiting for a pool connection timed out: node-postgres' pool (`connectionTimeoutMillis`, the error
 * reaches us as a plain `Error`, also from Prisma's adapter) or the Rust engine's pool (P2024).
 */
const POOL_TIMEOUT_TEXT = /timeout exceeded when trying to connect|Timed out fetching a new connection/i;

/**
 * Whether an error means the database had no connection for us in time: the pool is saturated (load),
 * not broken. Nothing was done (the transaction never started or was rolled back), so a retry is safe.
 */
export function isDatabaseBusy(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const x = e as { code?: unknown; message?: unknown; cause?: unknown };
    const message = typeof x.message === 'string' ? x.message : '';
    if (x.code === 'P2028' && TX_TIMEOUT_TEXT.test(message)) return true;
    if (x.code === 'P2024' || POOL_TIMEOUT_TEXT.test(message)) return true;
    e = x.cause;
  }
  return false;
}

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

export type DatabaseErrorKind = 'busy' | 'unavailable' | 'unique_violation';

/** The kind of a database error, or null when it is none of them (a bug, or not the database's). */
export function databaseErrorKind(err: unknown): DatabaseErrorKind | null {
  // Saturated pool first: its pg-pool message also matches the "unreachable" patterns.
  if (isDatabaseBusy(err)) return 'busy';
  if (isDatabaseUnavailable(err)) return 'unavailable';
  if (isUniqueViolation(err)) return 'unique_violation';
  return null;
}

/** A Prisma update's result, or null when its `where` matched no row ("no record found", P2025). */
export async function nullWhenNoRow<T>(update: Promise<T>): Promise<T | null> {
  try {
    return await update;
  } catch (e) {
    if ((e as { code?: unknown } | null)?.code === 'P2025') return null;
    throw e;
  }
}
