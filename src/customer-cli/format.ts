/** Output for people: aligned tables, key/value blocks, progress bars. */

export type Cell = string | number | null | undefined;

const text = (c: Cell): string => (c === null || c === undefined || c === '' ? '-' : String(c));

/** An aligned table with a header row; the last column is not padded. */
export function table(headers: string[], rows: Cell[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(text))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => [...(r[i] ?? '')].length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i] - [...c].length)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `key: value` lines, keys aligned. */
export function keyValues(pairs: [string, Cell][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${text(v)}`).join('\n');
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
