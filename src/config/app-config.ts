import { BackupStoreSpec, parseBackupStores } from './backup-stores';
import { parseTrustProxy, TrustProxy } from './trust-proxy';
import { parseAllowedRanges } from '../events/webhook-target';

/**
 * Typed configuration, read once from environment variables and validated at start-up.
 * A missing or malformed variable stops the process with a message naming it (see README "Configuration").
 */
export type Role = 'api' | 'worker' | 'webhooks' | 'cli';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export class AppConfig {
  readonly databaseUrl!: string;
  readonly redisUrl!: string;
  readonly host!: string;
  readonly port!: number;
  readonly logLevel!: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly bodyLimitBytes!: number;
  /** Proxies whose X-Forwarded-* headers are believed (client IP, page links); see trust-proxy.ts. */
  readonly trustProxy!: TrustProxy;
  /** Prefix of every BullMQ key in Redis (lets several deployments or test runs share one Redis). */
  readonly queuePrefix!: string;
  readonly snapshotLimitPerServer!: number;
  /** Manual backups per server (automatic ones do not count). */
  readonly backupLimitPerServer!: number;
  /** Name of the hypervisor node whose queue this worker consumes (worker role only). */
  readonly workerNode!: string | null;
  /** Hypervisor operations (creates, restores, deletes) a worker runs at once. */
  readonly workerConcurrency!: number;
  /**
   * Jobs a worker holds from the queue at once (≥ workerConcurrency): the queue's own round trips of
   * the next jobs overlap the running ones; those beyond workerConcurrency wait, their actions pending.
   */
  readonly workerJobsInFlight!: number;
  /** Hypervisor operations of one account a worker runs at once (the rest of the node is for others). */
  readonly workerAccountConcurrency!: number;
  readonly jobAttempts!: number;
  readonly jobBackoffMs!: number;
  readonly stopGraceSeconds!: number;
  readonly dispatchIntervalMs!: number;
  readonly progressWriteIntervalMs!: number;
  readonly libvirtMaxConcurrentCopies!: number;
  readonly snapshotCompression!: 'none' | 'zstd';
  readonly shutdownTimeoutMs!: number;
  /** BullMQ job lock: a worker that stops renewing it for this long is considered dead (stalled). */
  readonly jobLockMs!: number;
  readonly jobStalledIntervalMs!: number;
  /** A running action whose heartbeat is older than this, and whose job is gone, is failed by the reaper. */
  readonly actionStaleMs!: number;
  readonly reaperIntervalMs!: number;
  /** How often each API process looks for due backup slots, retention and verifications (0: never). */
  readonly backupSchedulerIntervalMs!: number;
  /**
   * The backup window in minutes (the contract's 240). Shorter is for demos and tests: the schedule's
   * clock shrinks with it (src/backup-schedule/schedule.ts).
   */
  readonly backupWindowMinutes!: number;
  /** How often a worker reconciles its node's server statuses with the hypervisor (0: never). */
  readonly powerStateIntervalMs!: number;
  /** How long a restore's safety copy is kept (undo possible), in hours; then the sweeper removes it. */
  readonly restoreSafetyCopyHours!: number;
  /** How often a worker looks for expired safety copies of its node. */
  readonly safetyCopySweepIntervalMs!: number;
  readonly heartbeatIntervalMs!: number;
  /** Longest a single create/restore may run before it is aborted and failed. */
  readonly operationTimeoutMs!: number;
  /** Requests per token per minute (all methods), and of those, writes (POST/PUT/PATCH/DELETE). */
  readonly rateLimitPerMinute!: number;
  /** The same, per account: all the account's tokens together. */
  readonly rateLimitAccountPerMinute!: number;
  readonly rateLimitAccountWritesPerMinute!: number;
  /** Live (unrevoked, unexpired) tokens an account may hold when a token creates one (the CLI is not capped). */
  readonly tokensPerAccountMax!: number;
  /** Token lookups finding no valid token one client address may cause per minute and replica (0: no bound). */
  readonly authFailuresPerSourcePerMinute!: number;
  readonly hotReadPath!: boolean;
  /** glibc malloc settings of the role at start-up (src/app/malloc-env.ts). */
  readonly mallocTuning!: boolean;
  readonly readCacheMaxBytes!: number;
  readonly listingCompactIntervalMs!: number;
  readonly rateLimitWritesPerMinute!: number;
  readonly idempotencyTtlHours!: number;
  /** Whole-request and header deadlines against slow clients. */
  readonly requestTimeoutMs!: number;
  readonly headersTimeoutMs!: number;
  /** Bearer secret that may read `/metrics` (besides admin tokens); null = admin tokens only. */
  readonly metricsToken!: string | null;
  /** How long the scrape-time database and queue counts are reused (ms). */
  readonly metricsCacheMs!: number;
  /** Worker role: port of its small metrics/health listener; 0 = off. */
  readonly workerMetricsPort!: number;
  readonly workerMetricsHost!: string;
  /**
   * 401/403 refusals: sources (status, IP, token) per minute per API replica whose first refusal is
   * written to the audit log at once; the rest of a minute's refusals are counted into summary rows.
   */
  readonly auditRefusalSourcesPerMinute!: number;
  /** Backup stores by name (BACKUP_DIR is `default`, BACKUP_STORES the others); see backup-stores.ts. */
  readonly backupStores!: ReadonlyMap<string, BackupStoreSpec>;
  /**
   * The key (32 bytes) that wraps every account's backup data key (`BACKUP_MASTER_KEY`, base64).
   * Required by the worker, which reads and writes backup data; null in the other roles when unset.
   */
  readonly backupMasterKey!: Buffer | null;
  /**
   * The master key being rotated away from (`BACKUP_MASTER_KEY_PREVIOUS`, base64): account keys still
   * wrapped by it are read, never written; `backups rotate-master-key` re-wraps them with the new one.
   */
  readonly backupMasterKeyPrevious!: Buffer | null;
  /**
   * Seals webhook signing secrets (`WEBHOOK_SECRET_KEY`, base64 of 32 bytes): a key of its own, so the
   * API, which creates webhooks, never holds the backup master key. Required by the webhook sender.
   */
  readonly webhookSecretKey!: Buffer | null;
  /**
   * The webhook secret key being rotated away from (`WEBHOOK_SECRET_KEY_PREVIOUS`): secrets still sealed
   * by it are opened, never sealed, until `webhooks rotate-secret-key` re-seals them with the new one.
   */
  readonly webhookSecretKeyPrevious!: Buffer | null;
  /** Webhook targets may be plain http (`WEBHOOK_ALLOW_HTTP`; `npm run local` only, never production). */
  readonly webhookAllowHttp!: boolean;
  /** Special-purpose address ranges (CIDRs) webhooks may reach anyway (`WEBHOOK_ALLOW_ADDRESSES`). */
  readonly webhookAllowedRanges!: string[];
  readonly webhooksPerAccountMax!: number;
  /** The sender: how often it looks for due deliveries, how many it sends at once, per-request deadline. */
  readonly webhookPollIntervalMs!: number;
  readonly webhookConcurrency!: number;
  readonly webhookTimeoutMs!: number;
  /** First retry delay; each next one doubles, up to webhookBackoffMaxMs. */
  readonly webhookBackoffBaseMs!: number;
  readonly webhookBackoffMaxMs!: number;
  /** How long an event is retried, and how long an endpoint may fail every attempt before it is disabled. */
  readonly webhookRetryHours!: number;
  /** How long account events are kept (an event a delivery still owes is kept until it is settled). */
  readonly eventRetentionDays!: number;
  /** How often each API process removes events past their retention (0: not in this process). */
  readonly eventPruneIntervalMs!: number;

  constructor(values: AppConfig) {
    Object.assign(this, values);
  }
}

type Env = Record<string, string | undefined>;

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  private raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  string(name: string, fallback?: string): string {
    const v = this.raw(name) ?? fallback;
    if (v === undefined) {
      this.problems.push(`${name} is required but not set`);
      return '';
    }
    return v;
  }

  url(name: string, protocols: string[], fallback?: string): string {
    const v = this.string(name, fallback);
    if (!v) return v;
    try {
      const u = new URL(v);
      if (!protocols.includes(u.protocol)) {
        this.problems.push(`${name} must be a ${protocols.join(' or ')} URL, got "${u.protocol}"`);
      }
    } catch {
      this.problems.push(`${name} is not a valid URL`);
    }
    return v;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^-?\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.problems.push(`${name} must be an integer between ${min} and ${max}, got "${v}"`);
      return fallback;
    }
    return Number(v);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(v)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')}, got "${v}"`);
      return fallback;
    }
    return v as T;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (['1', 'true', 'yes'].includes(v.toLowerCase())) return true;
    if (['0', 'false', 'no'].includes(v.toLowerCase())) return false;
    this.problems.push(`${name} must be true or false, got "${v}"`);
    return fallback;
  }

  trustProxy(name: string): TrustProxy {
    const parsed = parseTrustProxy(this.raw(name));
    if ('problem' in parsed) {
      this.problems.push(parsed.problem);
      return false;
    }
    return parsed.value;
  }

  /** A secret of exactly `size` bytes written in base64; null when unset (and not `required`). */
  base64Key(name: string, size: number, required: boolean): Buffer | null {
    const v = this.raw(name);
    if (v === undefined) {
      if (required) this.problems.push(`${name} is required but not set (e.g. openssl rand -base64 ${size})`);
      return null;
    }
    const key = /^[A-Za-z0-9+/]+={0,2}$/.test(v) ? Buffer.from(v, 'base64') : null;
    if (!key || key.length !== size || key.toString('base64') !== v) {
      // Never echo the value: it is a secret.
      this.problems.push(`${name} must be ${size} bytes in base64 (e.g. openssl rand -base64 ${size})`);
      return null;
    }
    return key;
  }

  /** Comma-separated CIDRs; empty when unset. */
  addressRanges(name: string): string[] {
    const parsed = parseAllowedRanges(this.raw(name) ?? '');
    if ('ranges' in parsed) return parsed.ranges;
    this.problems.push(
      `${name} must list address ranges like 127.0.0.0/8,::1/128; not: ${parsed.invalid.join(', ')}`,
    );
    return [];
  }

  bytes(name: string, fallback: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const m = /^(\d+)\s*(b|kb|mb)?$/i.exec(v);
    if (!m) {
      this.problems.push(`${name} must be a size like 65536, 64kb or 1mb, got "${v}"`);
      return fallback;
    }
    const mult = { b: 1, kb: 1024, mb: 1024 * 1024 }[(m[2] ?? 'b').toLowerCase() as 'b' | 'kb' | 'mb'];
    return Number(m[1]) * mult;
  }
}

export function loadConfig(env: Env, role: Role): AppConfig {
  const r = new Reader(env);
  const workerNode = role === 'worker' ? r.string('WORKER_NODE') : env.WORKER_NODE?.trim() || null;
  if (workerNode && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(workerNode)) {
    r.problems.push(
      `WORKER_NODE must be a node name (lower-case letters, digits, hyphens), got "${workerNode}"`,
    );
  }
  const config = new AppConfig({
    databaseUrl: r.url('DATABASE_URL', ['postgresql:', 'postgres:']),
    redisUrl: r.url(
      'REDIS_URL',
      ['redis:', 'rediss:'],
      role === 'cli' ? 'redis://127.0.0.1:6379' : undefined,
    ),
    host: r.string('HOST', '0.0.0.0'),
    port: r.int('PORT', 3000, 0, 65535),
    logLevel: r.oneOf(
      'LOG_LEVEL',
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      'info',
    ),
    bodyLimitBytes: r.bytes('BODY_LIMIT', 64 * 1024),
    trustProxy: r.trustProxy('TRUST_PROXY'),
    queuePrefix: r.string('QUEUE_PREFIX', 'vps'),
    snapshotLimitPerServer: r.int('SNAPSHOT_LIMIT_PER_SERVER', 5, 1, 1000),
    backupLimitPerServer: r.int('BACKUP_LIMIT_PER_SERVER', 10, 1, 1000),
    workerNode,
    workerConcurrency: r.int('WORKER_CONCURRENCY', 4, 1, 64),
    workerJobsInFlight: r.int('WORKER_JOBS_IN_FLIGHT', 32, 1, 512),
    workerAccountConcurrency: r.int('WORKER_ACCOUNT_CONCURRENCY', 2, 1, 64),
    jobAttempts: r.int('JOB_ATTEMPTS', 3, 1, 20),
    jobBackoffMs: r.int('JOB_BACKOFF_MS', 5000, 0, 3_600_000),
    stopGraceSeconds: r.int('STOP_GRACE_SECONDS', 60, 0, 3600),
    dispatchIntervalMs: r.int('DISPATCH_INTERVAL_MS', 2000, 50, 600_000),
    progressWriteIntervalMs: r.int('PROGRESS_WRITE_INTERVAL_MS', 1000, 0, 60_000),
    libvirtMaxConcurrentCopies: r.int('LIBVIRT_MAX_CONCURRENT_COPIES', 2, 1, 64),
    snapshotCompression: r.oneOf('SNAPSHOT_COMPRESSION', ['none', 'zstd'] as const, 'none'),
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 30_000, 0, 3_600_000),
    jobLockMs: r.int('JOB_LOCK_MS', 30_000, 1000, 3_600_000),
    jobStalledIntervalMs: r.int('JOB_STALLED_INTERVAL_MS', 30_000, 500, 3_600_000),
    actionStaleMs: r.int('ACTION_STALE_MS', 15 * 60_000, 1000, 7 * 86_400_000),
    reaperIntervalMs: r.int('REAPER_INTERVAL_MS', 60_000, 100, 86_400_000),
    backupSchedulerIntervalMs: r.int('BACKUP_SCHEDULER_INTERVAL_MS', 60_000, 0, 3_600_000),
    backupWindowMinutes: r.int('BACKUP_WINDOW_MINUTES', 240, 1, 240),
    powerStateIntervalMs: r.int('POWER_STATE_INTERVAL_MS', 5_000, 0, 3_600_000),
    restoreSafetyCopyHours: r.int('RESTORE_SAFETY_COPY_HOURS', 7 * 24, 1, 90 * 24),
    safetyCopySweepIntervalMs: r.int('SAFETY_COPY_SWEEP_INTERVAL_MS', 600_000, 0, 86_400_000),
    heartbeatIntervalMs: r.int('HEARTBEAT_INTERVAL_MS', 10_000, 100, 3_600_000),
    operationTimeoutMs: r.int('OPERATION_TIMEOUT_MS', 4 * 3_600_000, 1000, 7 * 86_400_000),
    rateLimitPerMinute: r.int('RATE_LIMIT_PER_MINUTE', 1200, 1, 1_000_000),
    hotReadPath: r.bool('HOT_READ_PATH', true),
    mallocTuning: r.bool('MALLOC_TUNING', true),
    readCacheMaxBytes: r.bytes('READ_CACHE_MAX_BYTES', 8 * 1024 * 1024),
    listingCompactIntervalMs: r.int('LISTING_COMPACT_INTERVAL_MS', 10_000, 0, 3_600_000),
    rateLimitWritesPerMinute: r.int('RATE_LIMIT_WRITES_PER_MINUTE', 120, 1, 1_000_000),
    rateLimitAccountPerMinute: r.int('RATE_LIMIT_ACCOUNT_PER_MINUTE', 3000, 1, 10_000_000),
    rateLimitAccountWritesPerMinute: r.int('RATE_LIMIT_ACCOUNT_WRITES_PER_MINUTE', 300, 1, 10_000_000),
    tokensPerAccountMax: r.int('TOKENS_PER_ACCOUNT_MAX', 50, 1, 100_000),
    authFailuresPerSourcePerMinute: r.int('AUTH_FAILURES_PER_SOURCE_PER_MINUTE', 120, 0, 1_000_000),
    idempotencyTtlHours: r.int('IDEMPOTENCY_TTL_HOURS', 24, 24, 24 * 30),
    requestTimeoutMs: r.int('REQUEST_TIMEOUT_MS', 30_000, 1000, 3_600_000),
    headersTimeoutMs: r.int('HEADERS_TIMEOUT_MS', 10_000, 1000, 3_600_000),
    metricsToken: env.METRICS_TOKEN?.trim() || null,
    metricsCacheMs: r.int('METRICS_CACHE_MS', 10_000, 0, 600_000),
    workerMetricsPort: r.int('WORKER_METRICS_PORT', 0, 0, 65535),
    workerMetricsHost: r.string('WORKER_METRICS_HOST', '127.0.0.1'),
    auditRefusalSourcesPerMinute: r.int('AUDIT_REFUSAL_SOURCES_PER_MINUTE', 100, 1, 100_000),
    backupStores: parseBackupStores(env, r.problems),
    backupMasterKey: r.base64Key('BACKUP_MASTER_KEY', 32, role === 'worker'),
    webhookSecretKey: r.base64Key('WEBHOOK_SECRET_KEY', 32, role === 'webhooks'),
    webhookSecretKeyPrevious: r.base64Key('WEBHOOK_SECRET_KEY_PREVIOUS', 32, false),
    backupMasterKeyPrevious: r.base64Key('BACKUP_MASTER_KEY_PREVIOUS', 32, false),
    webhookAllowHttp: r.bool('WEBHOOK_ALLOW_HTTP', false),
    webhookAllowedRanges: r.addressRanges('WEBHOOK_ALLOW_ADDRESSES'),
    webhooksPerAccountMax: r.int('WEBHOOKS_PER_ACCOUNT_MAX', 10, 1, 1000),
    webhookPollIntervalMs: r.int('WEBHOOK_POLL_INTERVAL_MS', 250, 10, 60_000),
    webhookConcurrency: r.int('WEBHOOK_CONCURRENCY', 16, 1, 256),
    webhookTimeoutMs: r.int('WEBHOOK_TIMEOUT_MS', 10_000, 100, 60_000),
    webhookBackoffBaseMs: r.int('WEBHOOK_BACKOFF_BASE_MS', 5_000, 1, 3_600_000),
    webhookBackoffMaxMs: r.int('WEBHOOK_BACKOFF_MAX_MS', 6 * 3_600_000, 1, 86_400_000),
    webhookRetryHours: r.int('WEBHOOK_RETRY_HOURS', 72, 1, 24 * 30),
    eventRetentionDays: r.int('EVENT_RETENTION_DAYS', 30, 1, 3650),
    eventPruneIntervalMs: r.int('EVENT_PRUNE_INTERVAL_MS', 3_600_000, 0, 86_400_000),
  });
  // A key being rotated away from needs the key rotated to, and another one.
  for (const [name, current, previous] of [
    ['BACKUP_MASTER_KEY', config.backupMasterKey, config.backupMasterKeyPrevious],
    ['WEBHOOK_SECRET_KEY', config.webhookSecretKey, config.webhookSecretKeyPrevious],
  ] as const) {
    if (previous && !current) {
      r.problems.push(`${name}_PREVIOUS is set without ${name} (the key rotated to)`);
    } else if (previous?.equals(current!)) {
      r.problems.push(`${name}_PREVIOUS must differ from ${name}`);
    }
  }
  if (config.metricsToken !== null && config.metricsToken.length < 16) {
    r.problems.push('METRICS_TOKEN must be at least 16 characters');
  }
  if (
    role === 'worker' &&
    config.workerMetricsPort !== 0 &&
    !config.metricsToken &&
    !['127.0.0.1', '::1', 'localhost'].includes(config.workerMetricsHost)
  ) {
    r.problems.push('WORKER_METRICS_HOST other than loopback needs METRICS_TOKEN (it protects the listener)');
  }
  if (r.problems.length) throw new ConfigError(r.problems);
  return config;
}
