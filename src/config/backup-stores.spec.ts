import { inspect } from 'node:util';
import { loadConfig } from './app-config';
import { parseBackupStores } from './backup-stores';

const parse = (env: Record<string, string>) => {
  const problems: string[] = [];
  const stores = parseBackupStores(env, problems);
  return { stores, problems };
};

const SECRET = 'very-secret-value-0123456789';
const s3 = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    offsite: {
      kind: 's3',
      endpoint: 'https://rgw.example.net',
      bucket: 'vps-backups',
      prefix: 'prod/',
      accessKeyIdEnv: 'S3_KEY',
      secretAccessKeyEnv: 'S3_SECRET',
      ...extra,
    },
  });

describe('backup stores configuration', () => {
  it('no configuration: no store (nodes may still name "default", which then is unavailable)', () => {
    expect(parse({})).toEqual({ stores: new Map(), problems: [] });
  });

  it('BACKUP_DIR is the default directory store; BACKUP_STORES adds named ones', async () => {
    const { stores, problems } = parse({
      BACKUP_DIR: '/mnt/backups',
      BACKUP_STORES: s3(),
      S3_KEY: 'AKIDEXAMPLE',
      S3_SECRET: SECRET,
    });
    expect(problems).toEqual([]);
    expect(stores.get('default')).toEqual({ kind: 'directory', path: '/mnt/backups' });
    const offsite = stores.get('offsite');
    expect(offsite).toMatchObject({
      kind: 's3',
      endpoint: 'https://rgw.example.net',
      region: 'us-east-1',
      bucket: 'vps-backups',
      prefix: 'prod/',
    });
    expect(offsite?.kind === 's3' && (await offsite.credentials!())).toEqual({
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: SECRET,
    });
  });

  it('the secret never shows in the configuration as logged, inspected or serialised', () => {
    const config = loadConfig(
      {
        DATABASE_URL: 'postgresql://x@127.0.0.1/db',
        REDIS_URL: 'redis://127.0.0.1',
        BACKUP_STORES: s3(),
        S3_KEY: 'AKIDEXAMPLE',
        S3_SECRET: SECRET,
      },
      'api',
    );
    expect(inspect(config, { depth: 10 })).not.toContain(SECRET);
    expect(JSON.stringify([...config.backupStores.values()])).not.toContain(SECRET);
  });

  it.each([
    [{ BACKUP_DIR: 'relative/dir' }, 'BACKUP_DIR path must be an absolute path'],
    [{ BACKUP_STORES: '{not json' }, 'BACKUP_STORES is not valid JSON'],
    [{ BACKUP_STORES: '[]' }, 'BACKUP_STORES must be a JSON object'],
    [{ BACKUP_STORES: '{"Bad Name":{"kind":"directory","path":"/x"}}' }, 'a store name must be'],
    [{ BACKUP_STORES: '{"a":{"kind":"ftp"}}' }, 'kind must be "directory" or "s3"'],
    [{ BACKUP_STORES: '{"a":{"kind":"directory","path":"/x","extra":1}}' }, 'unknown fields: extra'],
    [
      { BACKUP_DIR: '/x', BACKUP_STORES: '{"default":{"kind":"directory","path":"/y"}}' },
      'BACKUP_DIR already sets',
    ],
    [{ BACKUP_STORES: s3({ bucket: 'No_Such' }) }, 'valid S3 bucket name'],
    [{ BACKUP_STORES: s3({ endpoint: 'ftp://x' }) }, 'endpoint must be an http(s) URL'],
    [{ BACKUP_STORES: s3({ prefix: 'no-slash' }) }, 'prefix must be key segments'],
    [
      { BACKUP_STORES: s3({ secretAccessKeyEnv: undefined }), S3_KEY: 'k' },
      'both accessKeyIdEnv and secretAccessKeyEnv',
    ],
    [{ BACKUP_STORES: s3(), S3_SECRET: ' ' }, 'names S3_SECRET, which is not set'],
    [
      { BACKUP_DIR: '/mnt/b', BACKUP_STORES: '{"two":{"kind":"directory","path":"/mnt/b"}}' },
      'backup stores "default" and "two" share a location',
    ],
    [
      { BACKUP_DIR: '/mnt/b', BACKUP_STORES: '{"inner":{"kind":"directory","path":"/mnt/b/inner"}}' },
      'share a location',
    ],
    [
      {
        BACKUP_STORES: JSON.stringify({
          a: { kind: 's3', bucket: 'bk1', prefix: 'p/' },
          b: { kind: 's3', bucket: 'bk1', prefix: 'p/q/' },
        }),
      },
      'backup stores "a" and "b" share a location',
    ],
  ])('refuses %j: %s', (env, message) => {
    const { problems } = parse({ S3_KEY: 'k', S3_SECRET: 's', ...(env as Record<string, string>) });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(message);
  });

  it('a secret written into BACKUP_STORES itself is refused without echoing it', () => {
    const { problems } = parse({
      BACKUP_STORES: s3({ secretAccessKey: SECRET }),
      S3_KEY: 'k',
      S3_SECRET: 's',
    });
    expect(problems.join()).toContain('unknown fields: secretAccessKey');
    expect(problems.join()).not.toContain(SECRET);
  });
});
