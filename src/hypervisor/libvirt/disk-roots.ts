import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { diskMisplaced } from '../driver-errors';
import { diskPathProblem, isInside } from '../host-paths';
import { stepError } from './errors';

/**
 * Refuses (not retryable) a disk that does not lie inside one of the node's image roots: as written
 * (normal form, inside a root), and as the file system resolves it — the disk's directory, and the
 * disk itself when it exists, resolved through symbolic links, inside a root resolved the same way.
 */
export async function requireDiskInRoots(disk: string, imageRoots: readonly string[]): Promise<void> {
  const refuse = (why: string) => diskMisplaced(`${disk}: ${why}`);
  const written = diskPathProblem(disk, imageRoots);
  if (written) throw refuse(written);
  const real = async (p: string) => {
    try {
      return await fsp.realpath(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw stepError(e, 'hypervisor_error', `realpath ${p}`);
    }
  };
  const roots = (await Promise.all(imageRoots.map(real))).filter((r): r is string => r !== null);
  const within = (p: string) => roots.some((root) => p === root || isInside(p, root));
  const dir = await real(path.dirname(disk));
  if (dir === null || !within(dir)) throw refuse(`its directory resolves to ${dir ?? 'nothing'}`);
  const file = await real(disk);
  if (file !== null && !within(file)) throw refuse(`it resolves to ${file}`);
}
