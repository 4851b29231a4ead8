import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { Redis } from 'ioredis';
import { AppConfig } from '../config/app-config';

/**
 * The process's Redis connections. `client` serves commands (rate limits, health); BullMQ queues and
 * workers get their own connections from `connectionOptions()`.
 */
@Injectable()
export class RedisService implements OnModuleDestroy {
  readonly client: Redis;

  constructor(private readonly config: AppConfig) {
    this.client = new Redis(config.redisUrl, {
      lazyConnect: false,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      connectTimeout: 2000,
      // A Redis that stops answering (not just refusing) must not hang requests or the dispatcher.
      commandTimeout: 2000,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    // Errors surface through commands and /readyz; without a listener ioredis would log every retry.
    this.client.on('error', () => undefined);
  }

  /** A new dedicated connection for BullMQ (it needs `maxRetriesPerRequest: null`). */
  newBullConnection(): Redis {
    const conn = new Redis(this.config.redisUrl, {
      maxRetriesPerRequest: null,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    conn.on('error', () => undefined);
    return conn;
  }

  async ping(timeoutMs = 1000): Promise<boolean> {
    if (this.client.status !== 'ready') return false;
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        this.client.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
        }),
      ]);
      return result === 'PONG';
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async onModuleDestroy(): Promise<void> {
    this.client.disconnect();
  }
}
