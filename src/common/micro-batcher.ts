/**
 * Gathers the calls made in one turn of the event loop into one batch (flushed by `setImmediate`, so
 * every request whose bytes arrived in the same poll phase is in it) and runs the batch at once. At most
 * `maxInFlight` batches run at a time; calls made meanwhile wait and form the next batch, so under load
 * batches grow instead of round trips multiplying. Each call gets the value at its own position.
 */
export class MicroBatcher<K, V> {
  private queue: { key: K; resolve: (v: V) => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(
    private readonly run: (keys: K[]) => Promise<V[]>,
    private readonly maxInFlight = 2,
    private readonly maxBatch = 512,
  ) {}

  load(key: K): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      this.queue.push({ key, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      let running: Promise<V[]>;
      try {
        running = this.run(batch.map((b) => b.key));
      } catch (e) {
        running = Promise.reject(e);
      }
      running
        .then(
          (values) => {
            if (values.length !== batch.length)
              throw new Error('batch answered with the wrong number of values');
            batch.forEach((b, i) => b.resolve(values[i]));
          },
          (e: unknown) => batch.forEach((b) => b.reject(e)),
        )
        .catch((e: unknown) => batch.forEach((b) => b.reject(e)))
        .finally(() => {
          this.inFlight--;
          this.schedule();
        });
    }
  }
}
