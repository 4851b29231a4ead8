import { labelsCell, protectedCell, table } from './table';

describe('labelsCell', () => {
  it('is null (printed -) without labels', () => {
    expect(labelsCell({})).toBeNull();
    expect(labelsCell(undefined)).toBeNull();
    expect(table(['LABELS'], [[labelsCell({})]])).toBe('LABELS\n-');
  });

  it('shows every label when they fit', () => {
    expect(labelsCell({ env: 'prod', 'example.com/owner': 'db', empty: '' })).toBe(
      'env=prod,example.com/owner=db,empty=',
    );
  });

  it('keeps whole labels and counts the rest when they do not fit', () => {
    const labels = { env: 'prod', tier: 'db', team: 'payments', region: 'eu-west-1', cost: 'c42' };
    const cell = labelsCell(labels, 30)!;
    expect(cell).toBe('env=prod,tier=db,+3');
    expect(cell.length).toBeLessThanOrEqual(30);
  });

  it('cuts a single label longer than the cell', () => {
    const cell = labelsCell({ ['a'.repeat(63)]: 'b', c: 'd' }, 20)!;
    expect(cell).toBe(`${'a'.repeat(16)}…,+1`);
    expect([...cell].length).toBe(20);
    expect(labelsCell({ ['a'.repeat(63)]: 'b' }, 10)).toBe(`${'a'.repeat(9)}…`);
  });
});

describe('protectedCell', () => {
  it('says yes or no', () => {
    expect(protectedCell({ delete: true })).toBe('yes');
    expect(protectedCell({ delete: false })).toBe('no');
    expect(protectedCell(undefined)).toBe('no');
  });
});
