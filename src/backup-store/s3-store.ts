import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  BackupStore,
  BackupStoreError,
  BackupStoreErrorCode,
  StoreCallOptions,
  StoredObject,
} from './backup-store';
import { assertValidKey, assertValidPrefix, throwIfCancelled } from './store-key';

export interface S3StoreOptions {
  /** e.g. https://rgw.example.net; omitted: AWS S3 of `region`. */
  readonly endpoint?: string;
  readonly region: string;
  readonly bucket: string;
  /** Prepended to every key (`""` or ending in "/"): several deployments can share one bucket. */
  readonly prefix: string;
  /** Omitted: the SDK's default chain (AWS_* variables, instance or pod role). */
  readonly credentials?: S3ClientConfig['credentials'];
  /** Bodies larger than this go up as a multipart upload (default 64 MiB). */
  readonly multipartThresholdBytes?: number;
  /** Multipart part size (default 16 MiB; S3 needs ≥ 5 MiB for every part but the last). */
  readonly partSizeBytes?: number;
  /** Parts uploaded at once (default 4). */
  readonly partConcurrency?: number;
}

const MiB = 1024 * 1024;

/** S3 error names (or HTTP statuses) and the store's codes; everything else is `storage_error`. */
const BY_NAME: Record<string, BackupStoreErrorCode> = {
  NoSuchKey: 'not_found',
  NotFound: 'not_found',
  NoSuchBucket: 'unavailable',
  SlowDown: 'unavailable',
  ServiceUnavailable: 'unavailable',
  InternalError: 'unavailable',
  RequestTimeout: 'unavailable',
  RequestTimeTooSkewed: 'unavailable',
  TimeoutError: 'unavailable',
  ECONNREFUSED: 'unavailable',
  ECONNRESET: 'unavailable',
  ETIMEDOUT: 'unavailable',
  EPIPE: 'unavailable',
  ENOTFOUND: 'unavailable',
  EAI_AGAIN: 'unavailable',
  QuotaExceeded: 'insufficient_storage',
  EntityTooLarge: 'insufficient_storage',
  AbortError: 'cancelled',
  // No credentials to sign with: configuration, not the network.
  CredentialsProviderError: 'storage_error',
};

function mapError(e: unknown, what: string, signal?: AbortSignal): BackupStoreError {
  if (e instanceof BackupStoreError) return e;
  if (signal?.aborted) return new BackupStoreError('cancelled', what);
  const err = e as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const status = err.$metadata?.httpStatusCode;
  const detail = `${what}: ${err.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${err.message ?? String(e)}`;
  const code =
    BY_NAME[err.name ?? ''] ??
    BY_NAME[err.code ?? ''] ??
    (status === 404
      ? 'not_found'
      : status === 503 || status === 429 || (status ?? 0) >= 500
        ? 'unavailable'
        : undefined) ??
    (status === undefined ? 'unavailable' : 'storage_error'); // no HTTP answer at all: the network
  return new BackupStoreError(code, detail);
}

/** Any S3-compatible object store (Ceph RGW, AWS S3, …). */
export class S3Store implements BackupStore {
  readonly kind = 's3';
  private readonly client: S3Client;
  private readonly threshold: number;
  private readonly partSize: number;
  private readonly concurrency: number;

  constructor(private readonly opts: S3StoreOptions) {
    this.client = new S3Client({
      endpoint: opts.endpoint,
      region: opts.region,
      credentials: opts.credentials,
      forcePathStyle: true,
      // Newer SDKs send checksum trailers on streamed uploads that radosgw 16 answers with 411.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.threshold = opts.multipartThresholdBytes ?? 64 * MiB;
    this.partSize = Math.max(opts.partSizeBytes ?? 16 * MiB, 5 * MiB);
    this.concurrency = opts.partConcurrency ?? 4;
  }

  private objectKey(key: string): string {
    return this.opts.prefix + key;
  }

  async put(key: string, body: Buffer, opts: StoreCallOptions = {}): Promise<void> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    if (body.length > this.threshold) return this.putMultipart(key, body, opts.signal);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.opts.bucket,
          Key: this.objectKey(key),
          Body: body,
          ContentLength: body.length,
        }),
        { abortSignal: opts.signal },
      );
    } catch (e) {
      throw mapError(e, `put ${key}`, opts.signal);
    }
  }

  /** Parts in parallel; any failure or cancellation aborts the upload, so no object and no parts remain. */
  private async putMultipart(key: string, body: Buffer, signal?: AbortSignal): Promise<void> {
    const Bucket = this.opts.bucket;
    const Key = this.objectKey(key);
    let uploadId: string | undefined;
    try {
      uploadId = (
        await this.client.send(new CreateMultipartUploadCommand({ Bucket, Key }), { abortSignal: signal })
      ).UploadId;
      if (!uploadId) throw new BackupStoreError('storage_error', `put ${key}: no upload id`);
      const count = Math.ceil(body.length / this.partSize);
      const etags: string[] = new Array<string>(count);
      let next = 0;
      const uploadParts = async () => {
        while (next < count) {
          const i = next++;
          throwIfCancelled(signal);
          const part = body.subarray(i * this.partSize, Math.min((i + 1) * this.partSize, body.length));
          const out = await this.client.send(
            new UploadPartCommand({
              Bucket,
              Key,
              UploadId: uploadId,
              PartNumber: i + 1,
              Body: part,
              ContentLength: part.length,
            }),
            { abortSignal: signal },
          );
          etags[i] = out.ETag ?? '';
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.concurrency, count) }, uploadParts));
      throwIfCancelled(signal);
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
        { abortSignal: signal },
      );
    } catch (e) {
      if (uploadId) {
        // Not under the caller's signal: the abort must go out even (especially) when cancelled.
        await this.client
          .send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId }))
          .catch(() => undefined);
      }
      throw mapError(e, `put ${key} (multipart)`, signal);
    }
  }

  /** An acknowledged PUT is durable in S3 already (`durable: false` changes nothing): nothing to do. */
  async sync(keys: readonly string[], opts: StoreCallOptions = {}): Promise<void> {
    for (const key of keys) assertValidKey(key);
    throwIfCancelled(opts.signal);
  }

  async get(key: string, opts: StoreCallOptions = {}): Promise<Buffer> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.objectKey(key) }),
        { abortSignal: opts.signal },
      );
      if (!out.Body) throw new BackupStoreError('storage_error', `get ${key}: no body`);
      const bytes = await out.Body.transformToByteArray();
      // A view of the bytes the SDK collected, not a second copy of them.
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (e) {
      throw mapError(e, `get ${key}`, opts.signal);
    }
  }

  async head(key: string, opts: StoreCallOptions = {}): Promise<StoredObject | null> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.opts.bucket, Key: this.objectKey(key) }),
        { abortSignal: opts.signal },
      );
      return { key, sizeBytes: out.ContentLength ?? 0, modifiedAt: out.LastModified ?? new Date(0) };
    } catch (e) {
      const mapped = mapError(e, `head ${key}`, opts.signal);
      if (mapped.code === 'not_found') return null;
      throw mapped;
    }
  }

  async delete(key: string, opts: StoreCallOptions = {}): Promise<void> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    try {
      await this.client.send(
        new DeleteObjectCommand({ Bucket: this.opts.bucket, Key: this.objectKey(key) }),
        { abortSignal: opts.signal },
      );
    } catch (e) {
      const mapped = mapError(e, `delete ${key}`, opts.signal);
      if (mapped.code !== 'not_found') throw mapped;
    }
  }

  /** ListObjectsV2 pages of at most 1000 keys, in the byte order S3 lists in. */
  async *list(prefix: string, opts: StoreCallOptions = {}): AsyncIterable<StoredObject> {
    assertValidPrefix(prefix);
    let token: string | undefined;
    do {
      throwIfCancelled(opts.signal);
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.opts.bucket,
            Prefix: this.objectKey(prefix),
            ContinuationToken: token,
            MaxKeys: 1000,
          }),
          { abortSignal: opts.signal },
        );
      } catch (e) {
        throw mapError(e, `list ${prefix}`, opts.signal);
      }
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        yield {
          key: o.Key.slice(this.opts.prefix.length),
          sizeBytes: o.Size ?? 0,
          modifiedAt: o.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Release the client's sockets (tests, shutdown). */
  close(): void {
    this.client.destroy();
  }
}
