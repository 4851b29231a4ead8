/**
 * Where a node's files may live: its disks under one of its image roots, its snapshots in a directory
 * apart from them. These checks read the path strings only — the API and the CLI cannot see a node's
 * file system — so a path must be written in its one normal form: nothing a file system would resolve
 * differently from how it reads (`..`, `.`, `//`, a trailing `/`), nothing invisible (control
 * characters). The libvirt driver checks the real paths again on the node before touching a disk.
 */

/** The image roots a node gets when its operator names none: libvirt's default storage pool. */
export const DEFAULT_IMAGE_ROOTS: readonly string[] = ['/var/lib/libvirt/images'];

/** Longest path stored (the columns' width). */
export const MAX_HOST_PATH_LENGTH = 1024;

/** Most image roots one node may have. */
export const MAX_IMAGE_ROOTS = 16;

/**
 * Files the libvirt driver keeps next to a disk while it restores one (`<disk>.restoring`, the new
 * content; `<disk>.replaced`, the old disk's second name; `<disk>.rebuilding`, the raw file an earlier
 * version rebuilt a disk from a backup in) or reads one for a backup (`<disk>.backup-read`, a running disk's
 * copy). A disk path must not end with one: another server's restore would write over it, and a
 * worker's start-up cleanup would remove it.
 */
export const DISK_SIDE_FILE_SUFFIXES = {
  restoring: '.restoring',
  replaced: '.replaced',
  rebuilding: '.rebuilding',
  backupRead: '.backup-read',
} as const;

// eslint-disable-next-line no-control-regex -- control characters are what these look for
const CONTROL = /[\u0000-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex -- as above
const CONTROL_ALL = /[\u0000-\u001f\u007f]/g;

/**
 * Why `p` is not an absolute path in normal form (null when it is): starts with `/`, is not `/`
 * itself, has no empty, `.` or `..` segment, no trailing `/`, no control characters, at most
 * MAX_HOST_PATH_LENGTH characters. `what` starts the message (e.g. `snapshot_dir`).
 */
export function hostPathProblem(p: string, what: string): string | null {
  const why = normalFormProblem(p);
  return why === null ? null : `${what} ${why}`;
}

function normalFormProblem(p: string): string | null {
  if (p.length === 0 || p.length > MAX_HOST_PATH_LENGTH)
    return `must be 1-${MAX_HOST_PATH_LENGTH} characters long`;
  if (!p.startsWith('/')) return 'must be an absolute path';
  if (p === '/') return 'must not be the root directory';
  if (CONTROL.test(p)) return 'must not contain control characters';
  if (p.endsWith('/')) return 'must not end with "/"';
  for (const segment of p.slice(1).split('/')) {
    if (segment === '') return 'must not contain "//"';
    if (segment === '.' || segment === '..') return 'must not contain "." or ".." segments';
  }
  return null;
}

/** Whether `p` lies strictly inside directory `dir` (both in normal form). */
export function isInside(p: string, dir: string): boolean {
  return p.startsWith(`${dir}/`);
}

/** Whether one of two directories (in normal form) is, or lies inside, the other. */
export function overlap(a: string, b: string): boolean {
  return a === b || isInside(a, b) || isInside(b, a);
}

/** What is wrong with a node's image roots (empty when nothing): 1-16 directories in normal form, none twice. */
export function imageRootsProblems(imageRoots: readonly string[]): string[] {
  const problems: string[] = [];
  if (imageRoots.length === 0 || imageRoots.length > MAX_IMAGE_ROOTS)
    problems.push(`image_roots must hold 1-${MAX_IMAGE_ROOTS} directories`);
  const seen = new Set<string>();
  for (const root of imageRoots.slice(0, MAX_IMAGE_ROOTS)) {
    const why = hostPathProblem(root, `image root "${shown(root)}"`);
    if (why) problems.push(why);
    else if (seen.has(root)) problems.push(`image root "${shown(root)}" is given twice`);
    seen.add(root);
  }
  return problems;
}

export interface PathProblem {
  field: 'image_roots' | 'snapshot_dir';
  message: string;
}

/**
 * What is wrong with a node's file layout (empty when nothing): its image roots (imageRootsProblems),
 * the snapshot directory in normal form and apart from every root (neither inside the other) —
 * snapshot files and the driver's files next to disks must never be taken for each other.
 */
export function nodeLayoutProblems(layout: {
  imageRoots: readonly string[];
  snapshotDir: string;
}): PathProblem[] {
  const problems: PathProblem[] = imageRootsProblems(layout.imageRoots).map((message) => ({
    field: 'image_roots',
    message,
  }));
  const dirWhy = hostPathProblem(layout.snapshotDir, 'snapshot_dir');
  if (dirWhy) return [...problems, { field: 'snapshot_dir', message: dirWhy }];
  for (const root of layout.imageRoots.slice(0, MAX_IMAGE_ROOTS)) {
    if (normalFormProblem(root) === null && overlap(layout.snapshotDir, root)) {
      problems.push({
        field: 'snapshot_dir',
        message: `snapshot_dir must be apart from the image root "${shown(root)}" (neither inside the other)`,
      });
    }
  }
  return problems;
}

/**
 * Why `disk` cannot be a disk of a node with these image roots (null when it can): a path in normal
 * form, strictly inside one of the roots, not named like a file the driver keeps next to a disk.
 */
export function diskPathProblem(disk: string, imageRoots: readonly string[]): string | null {
  const why = hostPathProblem(disk, 'disk_path');
  if (why) return why;
  for (const suffix of Object.values(DISK_SIDE_FILE_SUFFIXES)) {
    if (disk.endsWith(suffix)) return `disk_path must not end with "${suffix}" (the driver's restore files)`;
  }
  if (!imageRoots.some((root) => isInside(disk, root))) {
    return `disk_path must lie inside one of the node's image roots (${imageRoots.map(shown).join(', ')})`;
  }
  return null;
}

/** A path as an error message shows it: bounded, control characters visible. */
function shown(p: string): string {
  const cut = p.length > 120 ? `${p.slice(0, 120)}…` : p;
  return cut.replace(CONTROL_ALL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
