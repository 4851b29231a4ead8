import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import path from 'node:path';
import { LocalStackEnvFile } from './local-stack-env';

describe('LocalStackEnvFile', () => {
  let dir: string;
  let file: LocalStackEnvFile;
  const stack = {
    DATABASE_URL: 'postgresql://postgres@127.0.0.1:55432/vps_local',
    REDIS_URL: 'redis://127.0.0.1:56379',
    QUEUE_PREFIX: 'vps-local',
  };

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'local-stack-env-'));
    file = new LocalStackEnvFile(path.join(dir, '.local', 'local.env'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('records only the stack settings, readable by the owner alone', () => {
    file.save({ ...stack, PATH: '/usr/bin', API_TOKEN: 'vps_secret' });
    expect(readFileSync(file.file, 'utf8')).toBe(
      'DATABASE_URL=postgresql://postgres@127.0.0.1:55432/vps_local\nREDIS_URL=redis://127.0.0.1:56379\nQUEUE_PREFIX=vps-local\n',
    );
    expect(statSync(file.file).mode & 0o777).toBe(0o600);
    expect(file.read()).toEqual(stack);
  });

  it('refuses to record a stack without a database', () => {
    expect(() => file.save({ REDIS_URL: stack.REDIS_URL })).toThrow('DATABASE_URL is not set');
    expect(file.read()).toBeNull();
  });

  it('fills in what the environment leaves unset, when DATABASE_URL is unset', () => {
    file.save(stack);
    const { env, used } = file.fillIn({
      PATH: '/usr/bin',
      DATABASE_URL: '  ',
      REDIS_URL: 'redis://elsewhere:6379',
    });
    expect(used).toBe(true);
    expect(env).toEqual({
      PATH: '/usr/bin',
      DATABASE_URL: stack.DATABASE_URL,
      REDIS_URL: 'redis://elsewhere:6379',
      QUEUE_PREFIX: stack.QUEUE_PREFIX,
    });
  });

  it('is not used at all when DATABASE_URL is set', () => {
    file.save(stack);
    const explicit = { DATABASE_URL: 'postgresql://app@db.example:5432/vps' };
    expect(file.fillIn(explicit)).toEqual({ env: explicit, used: false });
  });

  it('changes nothing when the local stack never ran, or recorded no database', () => {
    expect(file.fillIn({ PATH: '/usr/bin' })).toEqual({ env: { PATH: '/usr/bin' }, used: false });
    file.save(stack);
    writeFileSync(file.file, '# emptied\nREDIS_URL=redis://x\n');
    expect(file.fillIn({})).toEqual({ env: {}, used: false });
  });

  it('names the file and the database, without a password, when used', () => {
    const notice = file.usedNotice({ DATABASE_URL: 'postgresql://app:hunter2@127.0.0.1:5432/vps_local' });
    expect(notice).toContain(file.file);
    expect(notice).toContain('postgresql://app:***@127.0.0.1:5432/vps_local');
    expect(notice).not.toContain('hunter2');
  });
});
