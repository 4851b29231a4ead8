/** Aligned text tables for people, the one printer both CLIs use. */

export type Cell = string | number | null | undefined;

/** Empty cells print as `-`, so a column never looks shifted. */
export const cellText = (c: Cell): string => (c === null || c === undefined || c === '' ? '-' : String(c));

/** An aligned table with a header row; columns are two spaces apart and the last is not padded. */
export function table(headers: string[], rows: Cell[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(cellText))];
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

/** A table of records: the first record's keys, upper-cased, are the header; `(none)` when empty. */
export function recordTable(rows: Record<string, Cell>[]): string {
  if (rows.length === 0) return '(none)';
  const columns = Object.keys(rows[0]);
  return table(
    columns.map((c) => c.toUpperCase()),
    rows.map((r) => columns.map((c) => r[c])),
  );
}

/** Characters a labels cell shows at most: a table stays readable however many labels a resource has. */
export const LABELS_CELL_MAX = 40;

/**
 * Labels as one cell, `k=v,k=v`: whole labels while they fit in `max` characters, then `+N` for those
 * left out (a label longer than the cell alone is cut, with `…`); null (printed `-`) when there are none.
 */
export function labelsCell(labels: Record<string, string> | undefined, max = LABELS_CELL_MAX): string | null {
  const all = Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`);
  if (all.length === 0) return null;
  if (all.join(',').length <= max) return all.join(',');
  const shown: string[] = [];
  for (const label of all) {
    const rest = `,+${all.length - shown.length - 1}`;
    if ([...shown, label].join(',').length + rest.length > max) break;
    shown.push(label);
  }
  if (shown.length === 0) {
    const rest = all.length > 1 ? `,+${all.length - 1}` : '';
    return `${all[0].slice(0, max - rest.length - 1)}…${rest}`;
  }
  return `${shown.join(',')},+${all.length - shown.length}`;
}

/** A delete protection as a cell: `yes` or `no`. */
export function protectedCell(protection: { delete: boolean } | undefined): string {
  return protection?.delete ? 'yes' : 'no';
}
