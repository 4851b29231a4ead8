import { randomBytes } from 'node:crypto';
import { ConfigError, loadConfig } from './app-config';

const env = { DATABASE_URL: 'postgresql://u@localhost/db', REDIS_URL: 'redis://localhost:6379' };

describe('BACKUP_MASTER_KEY', () => {
  it('is 32 bytes in base64', () => {
    const key = randomBytes(32);
    expect(loadConfig({ ...env, BACKUP_MASTER_KEY: key.toString('base64') }, 'api').backupMasterKey).toEqual(
      key,
    );
    expect(loadConfig(env, 'api').backupMasterKey).toBeNull();
  });

  it('is required by the worker, which reads and writes backup data, and by no other role', () => {
    const worker = { ...env, WORKER_NODE: 'hv1' };
    expect(() => loadConfig(worker, 'worker')).toThrow(/BACKUP_MASTER_KEY is required/);
    expect(loadConfig(env, 'cli').backupMasterKey).toBeNull();
    const key = randomBytes(32).toString('base64');
    expect(
      loadConfig({ ...worker, BACKUP_MASTER_KEY: key }, 'worker').backupMasterKey?.toString('base64'),
    ).toBe(key);
  });

  it.each([
    ['too short', randomBytes(16).toString('base64')],
    ['too long', randomBytes(33).toString('base64')],
    ['not base64', '!'.repeat(44)],
    ['hex', randomBytes(32).toString('hex')],
  ])('refuses a key that is %s, without echoing it', (_why, value) => {
    let error: unknown;
    try {
      loadConfig({ ...env, BACKUP_MASTER_KEY: value }, 'api');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/BACKUP_MASTER_KEY must be 32 bytes in base64/);
    expect((error as ConfigError).message).not.toContain(value);
  });

  it('BACKUP_MASTER_KEY_PREVIOUS is read beside a different BACKUP_MASTER_KEY, and only so', () => {
    const [key, previous] = [randomBytes(32), randomBytes(32)];
    const both = {
      ...env,
      BACKUP_MASTER_KEY: key.toString('base64'),
      BACKUP_MASTER_KEY_PREVIOUS: previous.toString('base64'),
    };
    expect(loadConfig(both, 'cli').backupMasterKeyPrevious).toEqual(previous);
    expect(loadConfig(env, 'cli').backupMasterKeyPrevious).toBeNull();
    expect(() =>
      loadConfig({ ...env, BACKUP_MASTER_KEY_PREVIOUS: both.BACKUP_MASTER_KEY_PREVIOUS }, 'cli'),
    ).toThrow(/BACKUP_MASTER_KEY_PREVIOUS is set without BACKUP_MASTER_KEY/);
    expect(() => loadConfig({ ...both, BACKUP_MASTER_KEY_PREVIOUS: both.BACKUP_MASTER_KEY }, 'cli')).toThrow(
      /must differ/,
    );
  });
});
