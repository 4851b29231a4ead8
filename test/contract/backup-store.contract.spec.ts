import { CreateBucketCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pageAlignedBuffer } from '../../src/common/aligned-buffers';
import { DirectoryStore, TEMP_DIR } from '../../src/backup-store/directory-store';
import { S3Store, S3StoreOptions } from '../../src/backup-store/s3-store';
import { CephS3, cephTestsEnabled, dropBucket, s3Admin, startCeph } from '../support/ceph';
import { describeBackupStoreContract } from './backup-store.contract';

const execFileAsync = promisify(execFile);

// Twice: with O_DIRECT for chunk-sized files where the file system has it (as in production here), and
// the page-cache path a file system without O_DIRECT takes (direct-io.ts).
for (const [name, directIo] of [
  ['directory', true],
  ['directory, page cache only', false],
] as const) {
  describeBackupStoreContract(name, async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'backup-store-'));
    const store = new DirectoryStore(root, { directIo });
    return {
      store,
      storeWithSmallParts: store,
      leftovers: async () =>
        (await readdir(path.join(root, TEMP_DIR)).catch(() => [])).map((f) => `${TEMP_DIR}/${f}`),
      unreachable: () => new DirectoryStore(path.join(root, 'missing-mount')),
      dispose: () => rm(root, { recursive: true, force: true }),
    };
  });
}

describe('DirectoryStore chunk files', () => {
  it('bypass the page cache where the file system has O_DIRECT; small objects do not', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'backup-store-'));
    const residentBytes = async (key: string): Promise<number> => {
      // util-linux fincore: the bytes of the file in the page cache.
      const { stdout } = await execFileAsync('fincore', [
        '--bytes',
        '--noheadings',
        '--output',
        'RES',
        path.join(root, key),
      ]);
      return Number(stdout.trim());
    };
    try {
      const store = new DirectoryStore(root);
      const chunk = randomBytes(4 * 1024 * 1024 + 48);
      await store.put('accounts/1/chunks/ab/big', chunk);
      await store.put('accounts/1/manifests/small', randomBytes(64 * 1024));
      expect(await residentBytes('accounts/1/chunks/ab/big')).toBe(0);
      expect(await residentBytes('accounts/1/manifests/small')).toBe(64 * 1024);
      expect(
        (await store.get('accounts/1/chunks/ab/big', { into: Buffer.alloc(5 * 1024 * 1024) })).equals(chunk),
      ).toBe(true);
      expect(await residentBytes('accounts/1/chunks/ab/big')).toBe(0);
      // A body in page-aligned memory is written and read in place: the same bytes, and the memory
      // beyond the body (padding for the aligned write) does not end up in the file.
      const aligned = pageAlignedBuffer(4 * 1024 * 1024 + 48);
      aligned.fill(0xab);
      const body = aligned.subarray(0, 3 * 1024 * 1024 + 7);
      randomBytes(body.length).copy(body);
      await store.put('accounts/1/chunks/ab/aligned', body);
      expect(await store.head('accounts/1/chunks/ab/aligned')).toMatchObject({ sizeBytes: body.length });
      const into = pageAlignedBuffer(4 * 1024 * 1024 + 48).fill(0xcd);
      const got = await store.get('accounts/1/chunks/ab/aligned', { into });
      expect(got.buffer).toBe(into.buffer);
      expect(got.equals(body)).toBe(true);
      expect(await residentBytes('accounts/1/chunks/ab/aligned')).toBe(0);
      // The store's probe file is gone.
      expect(await readdir(path.join(root, TEMP_DIR))).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('DirectoryStore temporary files', () => {
  it('the sweep removes only temporary files older than the grace period', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'backup-store-'));
    try {
      const store = new DirectoryStore(root);
      const cancel = new AbortController();
      cancel.abort();
      await store.put('a/b', Buffer.from('x'));
      const { writeFile, mkdir, utimes } = await import('node:fs/promises');
      await mkdir(path.join(root, TEMP_DIR), { recursive: true });
      await writeFile(path.join(root, TEMP_DIR, 'stale'), 'half');
      await writeFile(path.join(root, TEMP_DIR, 'fresh'), 'half');
      const old = new Date(Date.now() - 2 * 3_600_000);
      await utimes(path.join(root, TEMP_DIR, 'stale'), old, old);
      expect(await store.sweepTemporaryFiles(3_600_000)).toBe(1);
      expect(await readdir(path.join(root, TEMP_DIR))).toEqual(['fresh']);
      expect((await store.get('a/b')).toString()).toBe('x');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

(cephTestsEnabled() ? describe : describe.skip)('S3 on Ceph', () => {
  let ceph: CephS3;
  let admin: S3Client;
  const bucket = `vps-contract-${process.pid}-${randomBytes(3).toString('hex')}`;
  const stores: S3Store[] = [];
  let harnesses = 0;

  beforeAll(() => {
    ceph = startCeph();
    admin = s3Admin(ceph);
  }, 120_000);

  beforeAll(async () => {
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  }, 60_000);

  afterAll(async () => {
    for (const s of stores) s.close();
    if (admin) {
      await dropBucket(admin, bucket);
      admin.destroy();
    }
    ceph?.stop();
  }, 120_000);

  const make = (opts: Partial<S3StoreOptions> & { prefix: string }): S3Store => {
    const store = new S3Store({
      endpoint: ceph.endpoint,
      region: 'us-east-1',
      bucket,
      credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
      ...opts,
    });
    stores.push(store);
    return store;
  };

  // Each harness has its own key prefix in the one bucket: stores are empty for each case.
  describeBackupStoreContract('s3 (Ceph RGW)', async () => {
    const prefix = `h${++harnesses}/`;
    return {
      store: make({ prefix }),
      storeWithSmallParts: make({
        prefix,
        multipartThresholdBytes: 8 * 1024 * 1024,
        partSizeBytes: 5 * 1024 * 1024,
      }),
      async leftovers() {
        const out = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
        return (out.Uploads ?? []).map((u) => `upload ${u.Key}`);
      },
      unreachable: () => make({ prefix, endpoint: 'http://127.0.0.1:9' }),
      dispose: async () => undefined,
    };
  });
});
