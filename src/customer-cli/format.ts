/** Output for people: aligned tables, key/value blocks, progress bars. */
import { Cell, cellText } from '../cli-kit/table';

export { labelsCell, protectedCell, table } from '../cli-kit/table';

/** `key: value` lines, keys aligned. */
export function keyValues(pairs: [string, Cell][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${cellText(v)}`).join('\n');
}

/** `2025-01-15T18:30:00Z` → `2025-01-15 18:30:00Z`. */
export function time(t: string | null | undefined): string | null {
  return t ? t.replace('T', ' ') : null;
}

export function mib(sizeMb: number | null | undefined): string | null {
  return sizeMb === null || sizeMb === undefined ? null : `${sizeMb} MiB`;
}

/** `[██████░░░░░░░░░░░░░░]  30%` */
export function bar(percent: number, width = 24): string {
  const p = Math.max(0, Math.min(100, Math.round(percent)));
  const full = Math.round((p / 100) * width);
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}] ${String(p).padStart(3)}%`;
}
