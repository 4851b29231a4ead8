import { hostPathProblem } from '../hypervisor/host-paths';
import { prefixProblem } from '../backup-store/store-key';

/**
 * Named backup stores from configuration (README "Configuration", docs/backups.md). Nodes name one in
 * their `backup_store` column; only names live in the database, locations and secrets only here.
 *
 *   BACKUP_DIR     the `default` store: a directory (a separate disk or an NFS mount in production)
 *   BACKUP_STORES  JSON object of further stores by name:
 *                  {"name": {"kind": "directory", "path": "/mnt/backups"}}
 *                  {"name": {"kind": "s3", "endpoint": "https://rgw.example", "region": "us-east-1",
 *                            "bucket": "vps-backups", "prefix": "prod/",
 *                            "accessKeyIdEnv": "S3_KEY_ID", "secretAccessKeyEnv": "S3_SECRET"}}
 *                  The credentials are read from the environment variables these name (omitted: the
 *                  SDK's default chain: AWS_ACCESS_KEY_ID…, an instance or pod role).
 */
export const DEFAULT_BACKUP_STORE = 'default';
export const BACKUP_STORE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Credentials as a function, so no log line, inspect or JSON of the configuration can show a secret. */
export type S3CredentialsProvider = () => Promise<{ accessKeyId: string; secretAccessKey: string }>;

export type BackupStoreSpec =
  | { readonly kind: 'directory'; readonly path: string }
  | {
      readonly kind: 's3';
      readonly endpoint?: string;
      readonly region: string;
      readonly bucket: string;
      readonly prefix: string;
      readonly credentials?: S3CredentialsProvider;
    };

type Env = Record<string, string | undefined>;

const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FIELDS = {
  directory: ['kind', 'path'],
  s3: ['kind', 'endpoint', 'region', 'bucket', 'prefix', 'accessKeyIdEnv', 'secretAccessKeyEnv'],
} as const;

function directorySpec(where: string, path: unknown, problems: string[]): BackupStoreSpec | null {
  const problem =
    typeof path === 'string' ? hostPathProblem(path, `${where} path`) : `${where} path must be a string`;
  if (problem) {
    problems.push(problem);
    return null;
  }
  return { kind: 'directory', path: path as string };
}

function s3Spec(
  where: string,
  o: Record<string, unknown>,
  env: Env,
  problems: string[],
): BackupStoreSpec | null {
  const before = problems.length;
  const str = (field: string): string | undefined => {
    const v = o[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim() === '')
      problems.push(`${where} ${field} must be a non-empty string`);
    return typeof v === 'string' ? v.trim() : undefined;
  };
  const endpoint = str('endpoint');
  if (endpoint !== undefined) {
    try {
      const u = new URL(endpoint);
      if (u.protocol !== 'http:' && u.protocol !== 'https:')
        problems.push(`${where} endpoint must be an http(s) URL`);
      if (u.username || u.password) problems.push(`${where} endpoint must not carry credentials`);
    } catch {
      problems.push(`${where} endpoint is not a valid URL`);
    }
  }
  const region = str('region') ?? 'us-east-1';
  const bucket = str('bucket');
  if (bucket === undefined) problems.push(`${where} bucket is required`);
  else if (!S3_BUCKET.test(bucket)) problems.push(`${where} bucket must be a valid S3 bucket name`);
  const prefix = str('prefix') ?? '';
  if (prefix !== '' && (!prefix.endsWith('/') || prefixProblem(prefix)))
    problems.push(`${where} prefix must be key segments (a-z, 0-9, ".", "_", "-") ending in "/"`);
  const keyIdEnv = str('accessKeyIdEnv');
  const secretEnv = str('secretAccessKeyEnv');
  let credentials: S3CredentialsProvider | undefined;
  if ((keyIdEnv === undefined) !== (secretEnv === undefined)) {
    problems.push(`${where} needs both accessKeyIdEnv and secretAccessKeyEnv, or neither`);
  } else if (keyIdEnv !== undefined && secretEnv !== undefined) {
    for (const name of [keyIdEnv, secretEnv]) {
      if (!ENV_NAME.test(name))
        problems.push(`${where} names "${name}", which is no environment variable name`);
      else if (!env[name]?.trim()) problems.push(`${where} names ${name}, which is not set`);
    }
    const accessKeyId = env[keyIdEnv]?.trim() ?? '';
    const secretAccessKey = env[secretEnv]?.trim() ?? '';
    credentials = () => Promise.resolve({ accessKeyId, secretAccessKey });
  }
  if (problems.length > before) return null;
  return { kind: 's3', endpoint, region, bucket: bucket!, prefix, credentials };
}

/** Where a store's objects live, as a string one location's keys all start with. */
function locationOf(spec: BackupStoreSpec): string {
  if (spec.kind === 'directory') return `directory:${spec.path}/`;
  return `s3:${spec.endpoint ?? `aws:${spec.region}`}/${spec.bucket}/${spec.prefix}`;
}

/**
 * Chunks are shared and collected per store name, so two names over one location (or one inside the
 * other) would let one name's collector delete objects the other's backups hold.
 */
function overlapProblems(stores: ReadonlyMap<string, BackupStoreSpec>, problems: string[]): void {
  const named = [...stores].map(([name, spec]) => ({ name, at: locationOf(spec) }));
  for (let i = 0; i < named.length; i++)
    for (let j = i + 1; j < named.length; j++) {
      const [a, b] = [named[i], named[j]];
      if (a.at.startsWith(b.at) || b.at.startsWith(a.at))
        problems.push(`backup stores "${a.name}" and "${b.name}" share a location: give each its own`);
    }
}

/** Every configured store by name; problems go to `problems` (the caller exits 78). */
export function parseBackupStores(env: Env, problems: string[]): ReadonlyMap<string, BackupStoreSpec> {
  const stores = new Map<string, BackupStoreSpec>();
  const dir = env.BACKUP_DIR?.trim();
  if (dir) {
    const spec = directorySpec('BACKUP_DIR', dir, problems);
    if (spec) stores.set(DEFAULT_BACKUP_STORE, spec);
  }
  const json = env.BACKUP_STORES?.trim();
  if (!json) return stores;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    problems.push('BACKUP_STORES is not valid JSON'); // the text may hold a secret: never echoed
    return stores;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    problems.push('BACKUP_STORES must be a JSON object of stores by name');
    return stores;
  }
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    const where = `BACKUP_STORES "${name}"`;
    if (!BACKUP_STORE_NAME.test(name)) {
      problems.push(`BACKUP_STORES: a store name must be 1-63 of a-z, 0-9 and "-", got "${name}"`);
      continue;
    }
    if (name === DEFAULT_BACKUP_STORE && dir) {
      problems.push(
        `BACKUP_STORES defines "${DEFAULT_BACKUP_STORE}", which BACKUP_DIR already sets: use one`,
      );
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`${where} must be an object`);
      continue;
    }
    const o = value as Record<string, unknown>;
    if (o.kind !== 'directory' && o.kind !== 's3') {
      problems.push(`${where} kind must be "directory" or "s3"`);
      continue;
    }
    const unknown = Object.keys(o).filter(
      (k) => !(FIELDS[o.kind as 'directory' | 's3'] as readonly string[]).includes(k),
    );
    if (unknown.length) {
      problems.push(
        `${where} has unknown fields: ${unknown.join(', ')} (secrets go in the variables accessKeyIdEnv/secretAccessKeyEnv name)`,
      );
      continue;
    }
    const spec =
      o.kind === 'directory' ? directorySpec(where, o.path, problems) : s3Spec(where, o, env, problems);
    if (spec) stores.set(name, spec);
  }
  overlapProblems(stores, problems);
  return stores;
}
