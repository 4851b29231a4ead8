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
