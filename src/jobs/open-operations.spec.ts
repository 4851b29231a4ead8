import { jobPriorityOf, MAX_JOB_PRIORITY } from './open-operations';
import { deferralMs } from './node-worker.service';

describe('jobPriorityOf', () => {
  it("is the action's place, at least 1 (a finished action re-enqueued has none) and at most BullMQ's bound", () => {
    expect(jobPriorityOf(1)).toBe(1);
    expect(jobPriorityOf(50)).toBe(50);
    expect(jobPriorityOf(0)).toBe(1);
    expect(jobPriorityOf(10_000_000)).toBe(MAX_JOB_PRIORITY);
  });
});

describe('deferralMs', () => {
  it('grows with the place in line and is bounded, so a deferred job always comes back', () => {
    expect(deferralMs(undefined)).toBe(250);
    expect(deferralMs(1)).toBe(250);
    expect(deferralMs(8)).toBe(2000);
    expect(deferralMs(MAX_JOB_PRIORITY)).toBe(30_000);
  });
});
