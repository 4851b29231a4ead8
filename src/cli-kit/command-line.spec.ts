import { parseCommandLine, UsageError } from './command-line';
import { recordTable, table } from './table';

const spec = {
  name: { type: 'string' },
  force: { type: 'boolean' },
  root: { type: 'string', multiple: true },
} as const;

describe('parseCommandLine', () => {
  it('reads --key value, --key=value, bare booleans, repeated lists and positionals', () => {
    expect(
      parseCommandLine(['a', '--name', 'x', '--force', '--root=/r1', '--root', '/r2', 'b'], spec),
    ).toEqual({
      positionals: ['a', 'b'],
      values: { name: 'x', force: true, root: ['/r1', '/r2'] },
    });
  });

  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--name'], /argument missing/],
    [['--force=yes'], /does not take an argument/],
    [['--name', 'a', '--name', 'b'], /^--name is given twice$/],
    [['--force', '--force'], /^--force is given twice$/],
  ])('%j is a usage error', (args, message) => {
    expect(() => parseCommandLine(args, spec)).toThrow(UsageError);
    expect(() => parseCommandLine(args, spec)).toThrow(message);
  });
});

describe('table', () => {
  it('aligns columns two spaces apart, prints empty cells as -, does not pad the last column', () => {
    expect(
      table(
        ['ID', 'NAME', 'NOTE'],
        [
          [1, 'web', null],
          [22, '', 'x'],
        ],
      ),
    ).toBe('ID  NAME  NOTE\n1   web   -\n22  -     x');
  });

  it('prints records under their upper-cased keys, and (none) when there are none', () => {
    expect(recordTable([{ id: 1, name: 'acme' }])).toBe('ID  NAME\n1   acme');
    expect(recordTable([])).toBe('(none)');
  });
});
