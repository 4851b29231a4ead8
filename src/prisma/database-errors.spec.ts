import { databaseErrorKind } from './database-errors';

describe('databaseErrorKind', () => {
  it('a saturated pool is busy, though its message also reads like an unreachable database', () => {
    expect(databaseErrorKind(new Error('timeout exceeded when trying to connect'))).toBe('busy');
    expect(databaseErrorKind({ code: 'P2024', message: 'Timed out fetching a new connection' })).toBe('busy');
    const late = { code: 'P2028', message: 'Unable to start a transaction in the given time.' };
    expect(databaseErrorKind(late)).toBe('busy');
  });

  it('an unreachable database is unavailable, found through causes too', () => {
    expect(databaseErrorKind({ code: 'ECONNREFUSED' })).toBe('unavailable');
    expect(databaseErrorKind(new Error('wrapped', { cause: { code: '57P01' } }))).toBe('unavailable');
    expect(databaseErrorKind({ name: 'PrismaClientInitializationError', message: 'x' })).toBe('unavailable');
  });

  it('unique violations, as Prisma and as node-postgres report them', () => {
    expect(databaseErrorKind({ code: 'P2002' })).toBe('unique_violation');
    expect(databaseErrorKind(new Error('adapter', { cause: { code: '23505' } }))).toBe('unique_violation');
  });

  it('anything else is no kind: a bug stays a 500', () => {
    expect(databaseErrorKind({ code: 'P2028', message: 'Transaction not found.' })).toBeNull();
    expect(databaseErrorKind(new Error('boom'))).toBeNull();
    expect(databaseErrorKind(undefined)).toBeNull();
  });
});
