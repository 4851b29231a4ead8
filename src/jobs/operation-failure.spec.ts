import { message } from '../common/messages';
import { BackupStoreError } from '../backup-store/backup-store';
import { operationFailureOf } from './operation-failure';

describe('operationFailureOf, for backup store errors', () => {
  it('a store without room left is backup_storage_full, in words that name no path or bucket', () => {
    const f = operationFailureOf(new BackupStoreError('insufficient_storage', 'put /srv/backups/x: ENOSPC'));
    expect(f).toMatchObject({ code: 'backup_storage_full', retryable: false });
    expect(f.message).toBe(message('backup_storage_full', 'en'));
    expect(f.message).not.toContain('/srv');
    expect(f.detail).toContain('ENOSPC');
    expect(message('backup_storage_full', 'cy')).toMatch(/llawn/);
  });

  it('an unreachable store stays backup_storage_unavailable, retryable; a cancelled call is cancelled', () => {
    expect(operationFailureOf(new BackupStoreError('unavailable'))).toMatchObject({
      code: 'backup_storage_unavailable',
      retryable: true,
    });
    expect(operationFailureOf(new BackupStoreError('cancelled')).code).toBe('cancelled');
  });
});
