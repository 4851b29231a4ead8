import { AcquiredChunk, ChunkAcquirer, ChunkReferences, ChunkToAcquire } from './chunk-references';

/** ChunkReferences' `acquire` alone, each statement held until the test lets it answer. */
class HeldStatements {
  readonly statements: (readonly string[])[] = [];
  private answers: (() => void)[] = [];
  fail: Error | null = null;

  acquire(_space: unknown, _backupId: number, chunks: readonly ChunkToAcquire[]): Promise<AcquiredChunk[]> {
    this.statements.push(chunks.map((c) => c.chunkId));
    return new Promise((resolve, reject) =>
      this.answers.push(() =>
        this.fail
          ? reject(this.fail)
          : resolve(
              [...new Set(chunks.map((c) => c.chunkId))].map((chunkId) => ({
                chunkId,
                stored: chunkId.startsWith('s'),
                inserted: !chunkId.startsWith('s'),
              })),
            ),
      ),
    );
  }

  answer(): void {
    const pending = this.answers;
    this.answers = [];
    for (const a of pending) a();
  }
}

const settle = () => new Promise((r) => setImmediate(r));
const chunk = (chunkId: string): ChunkToAcquire => ({ chunkId, sizeBytes: 1 });

describe('ChunkAcquirer', () => {
  it('sends the chunks asked for while a statement runs together in the next one', async () => {
    const held = new HeldStatements();
    const acquirer = new ChunkAcquirer(held as unknown as ChunkReferences, { store: 'd', accountId: 1 }, 7);
    const first = acquirer.acquire(chunk('a'));
    const later = ['b', 's1', 'c'].map((id) => acquirer.acquire(chunk(id)));
    expect(held.statements).toEqual([['a']]);
    held.answer();
    await settle();
    expect(held.statements).toEqual([['a'], ['b', 's1', 'c']]);
    held.answer();
    expect(await first).toEqual({ chunkId: 'a', stored: false, inserted: true });
    expect(await Promise.all(later)).toEqual([
      { chunkId: 'b', stored: false, inserted: true },
      { chunkId: 's1', stored: true, inserted: false },
      { chunkId: 'c', stored: false, inserted: true },
    ]);
  });

  it('counts a chunk asked for twice in one statement as inserted once; a failure fails its statement only', async () => {
    const held = new HeldStatements();
    const acquirer = new ChunkAcquirer(held as unknown as ChunkReferences, { store: 'd', accountId: 1 }, 7);
    const first = acquirer.acquire(chunk('a'));
    const twice = [acquirer.acquire(chunk('b')), acquirer.acquire(chunk('b'))];
    held.fail = new Error('the database went away');
    held.answer();
    await expect(first).rejects.toThrow('the database went away');
    held.fail = null;
    await settle();
    held.answer();
    expect((await Promise.all(twice)).map((h) => h.inserted)).toEqual([true, false]);
  });
});
