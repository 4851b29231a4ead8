import { languageOf, message, MESSAGES, MessageKey } from './messages';

describe('message catalogue', () => {
  const params = {
    limit: 5,
    used: 5,
    server_id: 7,
    status: 'restoring',
    operation: 'restoration',
    scope: 'write',
    what: 'x',
    snapshot_id: 3,
    backup_id: 4,
    action_id: 6,
    action_kind: 'create_snapshot',
    action_status: 'running',
    reason: 'r',
    retry_after: 9,
    address: '10.0.0.5',
    host: 'hooks.example.com',
    position: 6,
  };

  it.each(Object.keys(MESSAGES) as MessageKey[])('%s has an English and a distinct Welsh text', (key) => {
    const en = message(key, 'en', params);
    const cy = message(key, 'cy', params);
    expect(en.length).toBeGreaterThan(5);
    expect(cy.length).toBeGreaterThan(5);
    expect(cy).not.toBe(en);
    expect(en).not.toMatch(/undefined/);
    expect(cy).not.toMatch(/undefined/);
  });

  it('says why a backup cannot be restored, deleted or verified, in each language', () => {
    const p = { backup_id: 4, operation: 'deleted', reason: 'restoring' };
    expect(message('invalid_backup_state', 'en', p)).toBe(
      'Bad Request - Backup 4 cannot be deleted while a restore from it is in progress',
    );
    expect(message('invalid_backup_state', 'cy', p)).toBe(
      'Cais Gwael - Ni ellir dileu copi wrth gefn 4 tra mae adferiad ohono ar y gweill',
    );
    const verify = { backup_id: 5, operation: 'verified', reason: 'corrupt' };
    expect(message('invalid_backup_state', 'en', verify)).toBe(
      'Bad Request - Backup 5 cannot be verified while verification found it damaged',
    );
    expect(message('invalid_backup_state', 'cy', verify)).toBe(
      "Cais Gwael - Ni ellir gwirio copi wrth gefn 5 tra mae'r gwiriad wedi canfod ei fod wedi'i ddifrodi",
    );
    expect(message('invalid_server_state', 'cy', { operation: 'backup', status: 'running' })).toMatch(
      /ar gyfer copi wrth gefn:/,
    );
  });

  it('names the rate limit that was hit, in both languages', () => {
    const hit = { limit: 300, retry_after: 5, limit_scope: 'account', limit_kind: 'writes' };
    expect(message('rate_limited', 'en', hit)).toBe(
      'Too Many Requests - Rate limit of 300 writes per minute for this account exceeded; retry in 5 s',
    );
    expect(message('rate_limited', 'cy', hit)).toBe(
      'Gormod o Geisiadau - Aethpwyd dros y terfyn o 300 cais ysgrifennu y funud ar gyfer y cyfrif hwn; ' +
        'rhowch gynnig arall ymhen 5 eiliad',
    );
    expect(message('rate_limited', 'en', { ...hit, limit_scope: 'token', limit_kind: 'requests' })).toMatch(
      /300 requests per minute for this token/,
    );
  });

  it('uses the published wording in both languages', () => {
    expect(message('unauthorized', 'en')).toBe('Unauthorized - Invalid or missing authentication token');
    expect(message('unauthorized', 'cy')).toBe('Heb awdurdod - Tocyn dilysu annilys neu ar goll');
    expect(message('snapshot_not_found', 'cy')).toBe("Heb ei Ganfod - Nid yw'r ciplun yn bodoli");
    expect(message('snapshot_create_started', 'en')).toBe(
      'Snapshot is being created. This may take 3-10 minutes depending on server size.',
    );
    expect(message('restore_started', 'en')).toBe(
      'Server is being restored from snapshot. This may take 5-15 minutes.',
    );
  });

  it.each([
    [undefined, 'en'],
    ['', 'en'],
    ['cy', 'cy'],
    ['cy-GB', 'cy'],
    ['CY', 'cy'],
    ['en-GB,cy;q=0.8', 'en'],
    ['cy;q=0.9,en;q=0.8', 'cy'],
    ['fr, cy;q=0.5', 'cy'],
    ['cy;q=0', 'en'],
    ['de', 'en'],
  ])('Accept-Language %p → %s', (header, lang) => {
    expect(languageOf(header)).toBe(lang);
  });
});
