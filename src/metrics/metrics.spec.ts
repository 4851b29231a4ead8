import type { Request } from 'express';
import { routeTemplate } from './request-recorder';
import { BackupMetrics } from './backup-metrics';
import { JobMetrics } from './job-metrics';
import { credentialOf, matchesSecret } from './metrics-access';
import { MetricsService } from './metrics.service';

describe('metrics access', () => {
  it('reads a Bearer token, or the password of Basic authentication', () => {
    expect(credentialOf('Bearer abc')).toBe('abc');
    expect(credentialOf('bearer   abc')).toBe('abc');
    expect(credentialOf(`Basic ${Buffer.from('ops:vps_secret').toString('base64')}`)).toBe('vps_secret');
    expect(credentialOf(`Basic ${Buffer.from('ops:').toString('base64')}`)).toBeNull();
    expect(credentialOf(`Basic ${Buffer.from('no-colon').toString('base64')}`)).toBeNull();
    expect(credentialOf('Digest x')).toBeNull();
    expect(credentialOf('Bearer')).toBeNull();
    expect(credentialOf(undefined)).toBeNull();
  });

  it('compares with the configured secret, never matching when either is missing', () => {
    expect(matchesSecret('s3cret-s3cret-s3cret', 's3cret-s3cret-s3cret')).toBe(true);
    expect(matchesSecret('s3cret-s3cret-s3creT', 's3cret-s3cret-s3cret')).toBe(false);
    expect(matchesSecret('short', 's3cret-s3cret-s3cret')).toBe(false);
    expect(matchesSecret(null, 's3cret-s3cret-s3cret')).toBe(false);
    expect(matchesSecret('', null)).toBe(false);
  });
});

describe('routeTemplate', () => {
  const req = (r: Partial<Request> & { route?: { path: string } }) => ({ baseUrl: '', ...r }) as Request;
  it('is the matched route template, never the raw URL', () => {
    expect(
      routeTemplate(req({ originalUrl: '/api/v1/snapshots/42/', route: { path: '/api/v1/snapshots/:id' } })),
    ).toBe('/api/v1/snapshots/:id');
  });
  it('is `unmatched` without a route or for a catch-all route', () => {
    expect(routeTemplate(req({ originalUrl: '/x/1' }))).toBe('unmatched');
    expect(routeTemplate(req({ originalUrl: '/x/1', route: { path: '/{*path}' } }))).toBe('unmatched');
  });
  it('gives the queue dashboard one label', () => {
    expect(routeTemplate(req({ originalUrl: '/admin/queues/api/queues?x=1' }))).toBe('/admin/queues/*');
    expect(routeTemplate(req({ originalUrl: '/admin/queues' }))).toBe('/admin/queues/*');
    expect(routeTemplate(req({ originalUrl: '/admin/queuesX' }))).toBe('unmatched');
  });
});

describe('JobMetrics', () => {
  const counts = async (m: MetricsService) =>
    Object.fromEntries(
      (await m.jobDuration.get()).values
        .filter((v) => v.metricName === 'vps_job_duration_seconds_count')
        .map((v) => [`${v.labels.kind}/${v.labels.outcome}`, v.value]),
    );

  it('records each attempt by outcome, keeps the active gauge balanced, and passes results and errors through', async () => {
    const m = new MetricsService();
    const jobs = new JobMetrics(m);
    await expect(jobs.track('create_snapshot', async () => 'succeeded')).resolves.toBe('succeeded');
    await expect(jobs.track('create_snapshot', async () => 'skipped')).resolves.toBe('skipped');
    await expect(jobs.track('delete_snapshot', async () => 'failed')).resolves.toBe('failed');
    const retry = Object.assign(new Error('later'), { name: 'RetryLaterError' });
    await expect(jobs.track('restore_snapshot', () => Promise.reject(retry))).rejects.toBe(retry);
    await expect(jobs.track('restore_snapshot', () => Promise.reject(new Error('boom')))).rejects.toThrow(
      'boom',
    );
    expect(await counts(m)).toEqual({
      'create_snapshot/succeeded': 1,
      'create_snapshot/skipped': 1,
      'delete_snapshot/failed': 1,
      'restore_snapshot/retry': 1,
      'restore_snapshot/error': 1,
    });
    expect((await m.jobsActive.get()).values.every((v) => v.value === 0)).toBe(true);
    jobs.copied(1024);
    jobs.copied(0);
    expect((await m.bytesCopied.get()).values[0].value).toBe(1024);
  });

  it('without a registry (JobMetrics.none) only runs the job', async () => {
    await expect(JobMetrics.none.track('create_snapshot', async () => 'succeeded')).resolves.toBe(
      'succeeded',
    );
    expect(() => JobMetrics.none.copied(10)).not.toThrow();
  });
});

describe('BackupMetrics', () => {
  it('counts bytes (never a zero or negative amount) and outcomes by operation and result', async () => {
    const m = new MetricsService();
    const backups = new BackupMetrics(m);
    backups.read(4096);
    backups.read(0);
    backups.deduplicated('zero', 100);
    backups.deduplicated('stored', 200);
    backups.deduplicated('stored', -1);
    backups.finished('create', 'succeeded');
    backups.finished('restore', 'backup_corrupt');
    backups.finished('restore', 'backup_corrupt');
    expect((await m.backupReadBytes.get()).values[0].value).toBe(4096);
    const byLabels = async (c: { get(): Promise<{ values: { value: number; labels: object }[] }> }) =>
      Object.fromEntries((await c.get()).values.map((v) => [Object.values(v.labels).join('/'), v.value]));
    expect(await byLabels(m.backupDeduplicatedBytes)).toEqual({ zero: 100, stored: 200 });
    expect(await byLabels(m.backupOperations)).toEqual({
      'create/succeeded': 1,
      'restore/backup_corrupt': 2,
    });
  });

  it('without a registry (BackupMetrics.none) does nothing', () => {
    expect(() => {
      BackupMetrics.none.uploaded(10);
      BackupMetrics.none.finished('delete', 'succeeded');
    }).not.toThrow();
  });
});
