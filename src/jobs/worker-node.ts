/** The hypervisor node this worker serves (loaded from the database by `WORKER_NODE`). */
export interface WorkerNode {
  id: number;
  name: string;
  driver: 'libvirt' | 'fake';
  uri: string;
  snapshotDir: string;
  /** Directories its disks may live in: the libvirt driver touches no disk outside them. */
  imageRoots: string[];
}

export const WORKER_NODE = Symbol('WORKER_NODE');
