import { BackupDataError } from './backup-data-errors';
import { CHUNK_SIZE_BYTES } from './backup-layout';
import {
  BackupManifest,
  decodeManifest,
  encodeManifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
} from './manifest';

const manifest: BackupManifest = {
  format: MANIFEST_FORMAT,
  version: MANIFEST_VERSION,
  backupId: 5,
  accountId: 3,
  virtualSizeBytes: 2 * CHUNK_SIZE_BYTES + 1,
  chunkSizeBytes: CHUNK_SIZE_BYTES,
  mode: 'full',
  chunks: ['a'.repeat(64), null, 'b'.repeat(64)],
};
const expectFor = { accountId: 3, backupId: 5 };

describe('backup manifest', () => {
  it('reads back what it wrote', () => {
    expect(decodeManifest(encodeManifest(manifest), expectFor)).toEqual(manifest);
  });

  it.each<[string, unknown]>([
    ['another backup', { ...manifest, backupId: 6 }],
    ['another account', { ...manifest, accountId: 4 }],
    ['a newer version', { ...manifest, version: 2 }],
    ['another chunk size', { ...manifest, chunkSizeBytes: 1024 }],
    ['a chunk list short of the disk', { ...manifest, chunks: manifest.chunks.slice(1) }],
    ['a malformed chunk id', { ...manifest, chunks: ['A'.repeat(64), null, null] }],
    ['a negative size', { ...manifest, virtualSizeBytes: -1 }],
    ['an unknown mode', { ...manifest, mode: 'partial' }],
  ])('refuses %s as backup_corrupt', (_what, value) => {
    const json = Buffer.from(JSON.stringify(value));
    expect(() => decodeManifest(json, expectFor)).toThrow(BackupDataError);
    expect(() => decodeManifest(json, expectFor)).toThrow(
      expect.objectContaining({ code: 'backup_corrupt' }),
    );
  });

  it('refuses what is not JSON', () => {
    expect(() => decodeManifest(Buffer.from('{'), expectFor)).toThrow(
      expect.objectContaining({ code: 'backup_corrupt' }),
    );
  });
});
