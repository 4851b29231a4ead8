import { newRequestId } from './request-context';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newRequestId', () => {
  it('makes random version 4 UUIDs, none twice, across refills of its random bytes', () => {
    const ids = Array.from({ length: 1000 }, () => newRequestId());
    expect(ids.filter((id) => !UUID_V4.test(id))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    // Every hex digit shows up in every free position over 1000 ids (a stuck or short read would not).
    for (const at of [0, 7, 9, 15, 20, 35]) expect(new Set(ids.map((id) => id[at])).size).toBe(16);
  });
});
