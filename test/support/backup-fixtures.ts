/**
 * What the backup data path's tests run against until the real parts merge: a directory backup store
 * in a temporary folder (atomic put by rename) and a driver whose disks are Buffers, with checkpoints
 * that record the 64 KiB clusters written since they were made (as qcow2 dirty bitmaps do).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BackupStore, BackupStoreError, StoredObject } from '../../src/backup-store/backup-store';
import { BackupFacts } from '../../src/backups/backup-data-path';
import {
  BackupCapableDriver,
  BackupReadCallOptions,
  BackupReadSession,
  DiskExtent,
  DiskImageWriter,
  ServerRef,
} from '../../src/hypervisor/hypervisor-driver';

export class TempDirectoryStore implements BackupStore {
  readonly kind = 'directory';
  constructor(readonly root: string) {}

  async put(key: string, body: Buffer): Promise<void> {
    const file = path.join(this.root, key);
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, body);
    await rename(tmp, file);
  }

  /** Tests do not crash the host: every put is as durable as this store gets. */
  async sync(): Promise<void> {}

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(path.join(this.root, key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupStoreError('not_found', key);
      throw e;
    }
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      const s = await stat(path.join(this.root, key));
      return { key, sizeBytes: s.size, modifiedAt: s.mtime };
    } catch {
      return null;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(path.join(this.root, key), { force: true });
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const keys: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (!e.name.includes('.tmp-')) keys.push(path.relative(this.root, full));
      }
    };
    await walk(this.root);
    for (const key of keys.filter((k) => k.startsWith(prefix)).sort()) {
      const o = await this.head(key);
      if (o) yield o;
    }
  }
}

const CLUSTER = 64 * 1024;
const ZERO_CLUSTER = Buffer.alloc(CLUSTER);

interface Disk {
  data: Buffer;
  /** checkpoint name → clusters written since it was made */
  checkpoints: Map<string, Set<number>>;
}

/** A driver over in-memory disks: the backup seam only (the data path needs nothing else). */
export class BufferDiskDriver implements BackupCapableDriver {
  readonly disks = new Map<number, Disk>();

  createDisk(serverId: number, data: Buffer): void {
    this.disks.set(serverId, { data: Buffer.from(data), checkpoints: new Map() });
  }

  disk(serverId: number): Buffer {
    return this.get(serverId).data;
  }

  /** A guest write: changes the disk and marks its clusters in every checkpoint. */
  guestWrite(serverId: number, offset: number, bytes: Buffer): void {
    const d = this.get(serverId);
    bytes.copy(d.data, offset);
    for (const dirty of d.checkpoints.values()) {
      for (let c = Math.floor(offset / CLUSTER); c * CLUSTER < offset + bytes.length; c++) dirty.add(c);
    }
  }

  openBackupRead(
    server: ServerRef,
    opts: { readonly since: string | null; readonly checkpoint: string },
  ): Promise<BackupReadSession> {
    const d = this.get(server.id);
    const dirty = opts.since ? d.checkpoints.get(opts.since) : undefined;
    // As libvirt's view of a running server: an incremental view holds the changed clusters only
    // (outside them it reads zeros; the contract promises nothing there but "as the base had it").
    const view = dirty ? Buffer.alloc(d.data.length) : Buffer.from(d.data);
    for (const c of dirty ?? []) d.data.copy(view, c * CLUSTER, c * CLUSTER, (c + 1) * CLUSTER);
    const clusters = dirty
      ? [...dirty].sort((a, b) => a - b)
      : Array.from({ length: Math.ceil(view.length / CLUSTER) }, (_, c) => c).filter((c) => {
          const cluster = view.subarray(c * CLUSTER, (c + 1) * CLUSTER);
          return !cluster.equals(ZERO_CLUSTER.subarray(0, cluster.length));
        });
    d.checkpoints.set(opts.checkpoint, new Set());
    const extents: DiskExtent[] = clusters.map((c) => ({
      offset: c * CLUSTER,
      length: Math.min(CLUSTER, view.length - c * CLUSTER),
    }));
    const checkpoint = opts.checkpoint;
    return Promise.resolve({
      virtualSizeBytes: view.length,
      mode: dirty ? 'incremental' : 'full',
      fullReason: dirty ? null : opts.since ? 'checkpoint_missing' : 'no_previous_backup',
      extents,
      consistency: 'stopped',
      checkpoint,
      read: (offset: number, length: number, o: BackupReadCallOptions = {}) => {
        const bytes = view.subarray(offset, offset + length);
        if (!o.into) return Promise.resolve(Buffer.from(bytes));
        bytes.copy(o.into);
        return Promise.resolve(o.into.subarray(0, length));
      },
      close: ({ keepCheckpoint }: { keepCheckpoint: boolean }) => {
        if (!keepCheckpoint) d.checkpoints.delete(checkpoint);
        else
          for (const name of [...d.checkpoints.keys()]) if (name !== checkpoint) d.checkpoints.delete(name);
        return Promise.resolve();
      },
    });
  }

  async restoreDiskFrom(
    server: ServerRef,
    virtualSizeBytes: number,
    fill: (disk: DiskImageWriter) => Promise<void>,
  ): Promise<void> {
    const next = Buffer.alloc(virtualSizeBytes);
    await fill({
      write: (offset: number, data: Buffer) => {
        data.copy(next, offset);
        return Promise.resolve();
      },
    });
    this.disks.set(server.id, { data: next, checkpoints: new Map() });
  }

  private get(serverId: number): Disk {
    const d = this.disks.get(serverId);
    if (!d) throw new Error(`no disk for server ${serverId}`);
    return d;
  }
}

export function serverRef(id: number): ServerRef {
  return { id, domain: `vm-${id}`, domainUuid: null, diskPath: `/nowhere/${id}.qcow2` };
}

/** What a backup row of server `serverId` would say of it (written into its manifest). */
export function backupFacts(serverId: number, name = `backup of ${serverId}`): BackupFacts {
  return {
    serverId,
    name,
    description: '',
    kind: 'manual',
    createdAt: new Date('2026-12-01T10:00:00.000Z'),
    expiresAt: null,
  };
}
