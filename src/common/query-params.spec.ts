import { ArgumentMetadata } from '@nestjs/common';
import { SNAPSHOT_LIST_PARAMS, SnapshotListQuery } from '../snapshots/snapshot-list-params';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PAGE_SIZE_MESSAGE } from './pagination';
import { ProblemException } from './problem';
import { createValidationPipe } from './validation';

const pipe = createValidationPipe();
const asQuery: ArgumentMetadata = { type: 'query', metatype: SnapshotListQuery };

async function read(query: Record<string, unknown>): Promise<SnapshotListQuery> {
  return (await pipe.transform(query, asQuery)) as SnapshotListQuery;
}

async function fieldErrors(query: Record<string, unknown>): Promise<unknown> {
  try {
    await read(query);
  } catch (e) {
    if (e instanceof ProblemException) return e.spec.errors;
    throw e;
  }
  throw new Error('accepted');
}

describe('query DTOs through the validation pipe', () => {
  it('applies the defaults and reads numbers written in plain digits', async () => {
    expect({ ...(await read({})) }).toEqual({
      page: 1,
      page_size: DEFAULT_PAGE_SIZE,
      ordering: '-created_at',
    });
    expect({
      ...(await read({ page: '2', page_size: String(MAX_PAGE_SIZE), server_id: '7', ordering: 'name' })),
    }).toEqual({
      page: 2,
      page_size: MAX_PAGE_SIZE,
      server_id: 7,
      ordering: 'name',
    });
  });

  it('ignores a parameter the DTO does not read', async () => {
    expect(await read({ x: '1', access: 'y' })).not.toHaveProperty('x');
  });

  it.each([['0x10'], ['1e3'], ['01'], [' 1'], [''], ['2147483648'], [['1', '2']]])(
    'refuses server_id=%j with one message',
    async (value) => {
      expect(await fieldErrors({ server_id: value })).toEqual([
        { field: 'server_id', message: 'server_id must be a positive integer' },
      ]);
    },
  );

  it('bounds page_size by MAX_PAGE_SIZE, and names every bad parameter at once', async () => {
    expect(await fieldErrors({ page_size: String(MAX_PAGE_SIZE + 1), ordering: 'size_mb' })).toEqual(
      expect.arrayContaining([
        { field: 'page_size', message: PAGE_SIZE_MESSAGE },
        { field: 'ordering', message: expect.stringMatching(/^ordering must be one of /) },
      ]),
    );
  });

  it('SNAPSHOT_LIST_PARAMS are the parameters the DTO reads', () => {
    expect([...SNAPSHOT_LIST_PARAMS].sort()).toEqual([
      'label_selector',
      'ordering',
      'page',
      'page_size',
      'server_id',
    ]);
  });
});
