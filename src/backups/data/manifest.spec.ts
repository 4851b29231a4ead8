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
  index: {
    serverId: 9,
    name: 'before the upgrade',
    description: 'n',
    kind: 'manual',
    createdAt: '2026-12-01T10:00:00.000Z',
    completedAt: '2026-12-01T10:01:00.000Z',
    expiresAt: null,
    modeReason: 'no_previous_backup',
    consistency: 'stopped',
    checkpoint: 'vps-backup-5',
    sizeBytes: CHUNK_SIZE_BYTES + 1,
    storedBytes: CHUNK_SIZE_BYTES + 97,
  },
};
const expectFor = { accountId: 3, backupId: 5 };
const withIndex = (change: Record<string, unknown>) => ({
  ...manifest,
  index: { ...manifest.index, ...change },
});

describe('backup manifest', () => {
  it('reads back what it wrote, index included', () => {
    expect(decodeManifest(encodeManifest(manifest), expectFor)).toEqual(manifest);
  });

  it('still reads a version 1 manifest (no index)', () => {
    const { index: _none, ...v1 } = { ...manifest, version: 1 };
    expect(decodeManifest(Buffer.from(JSON.stringify(v1)), expectFor)).toEqual({
      ...manifest,
      version: 1,
      index: null,
    });
  });

  it.each<[string, unknown]>([
    ['another backup', { ...manifest, backupId: 6 }],
    ['another account', { ...manifest, accountId: 4 }],
    ['a newer version', { ...manifest, version: 3 }],
    ['another chunk size', { ...manifest, chunkSizeBytes: 1024 }],
    ['a chunk list short of the disk', { ...manifest, chunks: manifest.chunks.slice(1) }],
    ['a malformed chunk id', { ...manifest, chunks: ['A'.repeat(64), null, null] }],
    ['a negative size', { ...manifest, virtualSizeBytes: -1 }],
    ['an unknown mode', { ...manifest, mode: 'partial' }],
    ['a version 2 manifest without its index', { ...manifest, index: null }],
    ['an index without a server', withIndex({ serverId: 0 })],
    ['a name longer than a backup row takes', withIndex({ name: 'x'.repeat(65) })],
    ['an unknown kind', withIndex({ kind: 'weekly' })],
    ['a time that is not one', withIndex({ createdAt: 'yesterday' })],
    ['an unknown consistency', withIndex({ consistency: 'fine' })],
    ['an unknown mode reason', withIndex({ modeReason: 'felt like it' })],
    ['a fractional size', withIndex({ sizeBytes: 1.5 })],
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
