/**
 * The S3 server of the backup-store tests: the single-node Ceph of `scripts/services.sh ceph`, started
 * by the first suite that needs it. Each test process holds a lease on it (`services.sh acquire`), and
 * the last lease released stops a Ceph that a lease started — so jest workers running S3 suites side
 * by side never stop the Ceph another one still uses, and the rest of the suite never pays its
 * start-up. `CEPH_TESTS=0` (set by `npm test` where Ceph cannot be installed) skips them.
 */
import { DeleteBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const SERVICES = path.resolve(__dirname, '../../scripts/services.sh');

export interface CephS3 {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): void;
}

export const cephTestsEnabled = (): boolean => process.env.CEPH_TESTS !== '0';

export function startCeph(): CephS3 {
  const holder = String(process.pid);
  execFileSync('bash', [SERVICES, 'acquire', 'ceph', holder], { stdio: ['ignore', 'ignore', 'inherit'] });
  const env: Record<string, string> = {};
  const lines = execFileSync('bash', [SERVICES, 'env'], { encoding: 'utf8' });
  for (const m of lines.matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]] = m[2];
  return {
    endpoint: env.CEPH_S3_ENDPOINT,
    accessKeyId: env.CEPH_S3_ACCESS_KEY,
    secretAccessKey: env.CEPH_S3_SECRET_KEY,
    stop() {
      execFileSync('bash', [SERVICES, 'release', 'ceph', holder], { stdio: ['ignore', 'ignore', 'inherit'] });
    },
  };
}

/** An S3 client of the test user, for the tests' own setup and inspection. */
export function s3Admin(ceph: CephS3): S3Client {
  return new S3Client({
    endpoint: ceph.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
  });
}

/** Empties and deletes a test bucket. */
export async function dropBucket(admin: S3Client, bucket: string): Promise<void> {
  let token: string | undefined;
  do {
    const page = await admin.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const o of page.Contents ?? [])
      await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
    token = page.NextContinuationToken;
  } while (token);
  await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
}
