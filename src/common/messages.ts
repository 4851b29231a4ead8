/**
 * Message catalogue: every customer-facing sentence, in English and Welsh (`Accept-Language: cy`).
 * The published page's own wording is used where it has one.
 */
export type Lang = 'en' | 'cy';
type Params = Record<string, string | number | null | undefined>;
type Message = { en: (p: Params) => string; cy: (p: Params) => string };

/** Why a backup cannot be restored, deleted or verified now (`invalid_backup_state`). */
export type BackupStateReason = 'in_progress' | 'failed' | 'corrupt' | 'restoring';
const BACKUP_STATE_REASONS_EN: Record<BackupStateReason, string> = {
  in_progress: 'it is still being created',
  failed: 'it failed and holds no data',
  corrupt: 'verification found it damaged',
  restoring: 'a restore from it is in progress',
};
const BACKUP_STATE_REASONS_CY: Record<BackupStateReason, string> = {
  in_progress: "mae'n dal i gael ei greu",
  failed: "mae wedi methu ac nid yw'n dal unrhyw ddata",
  corrupt: "mae'r gwiriad wedi canfod ei fod wedi'i ddifrodi",
  restoring: 'mae adferiad ohono ar y gweill',
};

/** The operation an `invalid_backup_state` refuses, in Welsh (English says `cannot be <operation>`). */
const BACKUP_OPERATIONS_CY: Record<string, string> = {
  restored: 'adfer',
  deleted: 'dileu',
  verified: 'gwirio',
};

/** Why a restore cannot be undone (`action_not_undoable`; src/restore-undo/safety-copy.ts). */
const NOT_UNDOABLE_REASONS_EN: Record<string, string> = {
  not_a_restore: 'it is not a restore',
  not_succeeded: 'it has not succeeded',
  no_safety_copy: 'it has no safety copy of the disk it replaced',
  expired: 'its safety copy has expired',
};
const NOT_UNDOABLE_REASONS_CY: Record<string, string> = {
  not_a_restore: 'nid yw’n adferiad',
  not_succeeded: 'nid yw wedi llwyddo',
  no_safety_copy: 'nid oes ganddo gopi diogelwch o’r ddisg a ddisodlodd',
  expired: 'mae ei gopi diogelwch wedi dod i ben',
};

const m = (en: Message['en'], cy: Message['cy']): Message => ({ en, cy });

export const MESSAGES = {
  unauthorized: m(
    () => 'Unauthorized - Invalid or missing authentication token',
    () => 'Heb awdurdod - Tocyn dilysu annilys neu ar goll',
  ),
  token_outside_header: m(
    (p) =>
      `Unauthorized - Send the token in the "Authorization: Bearer <token>" header, never as an access_token ${p.where === 'body' ? 'member of the request body' : 'parameter in the URL'}`,
    (p) =>
      `Heb awdurdod - Anfonwch y tocyn ym mhennawd "Authorization: Bearer <token>", byth fel ${p.where === 'body' ? 'aelod access_token o gorff y cais' : 'paramedr access_token yn yr URL'}`,
  ),
  forbidden: m(
    (p) => `Forbidden - This token lacks the "${p.scope}" scope`,
    (p) => `Gwaharddedig - Nid oes gan y tocyn hwn y cwmpas "${p.scope}"`,
  ),
  snapshot_not_found: m(
    () => 'Not Found - Snapshot does not exist',
    () => "Heb ei Ganfod - Nid yw'r ciplun yn bodoli",
  ),
  backup_not_found: m(
    () => 'Not Found - Backup does not exist',
    () => "Heb ei Ganfod - Nid yw'r copi wrth gefn yn bodoli",
  ),
  server_not_found: m(
    () => 'Not Found - Server does not exist',
    () => "Heb ei Ganfod - Nid yw'r gweinydd yn bodoli",
  ),
  action_not_found: m(
    () => 'Not Found - Action does not exist',
    () => "Heb ei Ganfod - Nid yw'r weithred yn bodoli",
  ),
  token_not_found: m(
    () => 'Not Found - Token does not exist',
    () => "Heb ei Ganfod - Nid yw'r tocyn yn bodoli",
  ),
  node_not_found: m(
    () => 'Not Found - Node does not exist',
    () => "Heb ei Ganfod - Nid yw'r nod yn bodoli",
  ),
  account_not_found: m(
    () => 'Not Found - Account does not exist',
    () => "Heb ei Ganfod - Nid yw'r cyfrif yn bodoli",
  ),
  not_found: m(
    () => 'Not Found - The requested resource does not exist',
    () => "Heb ei Ganfod - Nid yw'r adnodd a geisiwyd yn bodoli",
  ),
  page_not_found: m(
    () => 'Not Found - Invalid page',
    () => 'Heb ei Ganfod - Tudalen annilys',
  ),
  validation_failed: m(
    () => 'Bad Request - Invalid parameters',
    () => 'Cais Gwael - Paramedrau annilys',
  ),
  malformed_json: m(
    () => 'Bad Request - The request body is not valid JSON',
    () => 'Cais Gwael - Nid yw corff y cais yn JSON dilys',
  ),
  unsupported_media_type: m(
    () => 'Unsupported Media Type - Send the request body as application/json',
    () => 'Math o Gyfrwng heb ei Gefnogi - Anfonwch gorff y cais fel application/json',
  ),
  payload_too_large: m(
    (p) => `Payload Too Large - The request body exceeds ${p.limit} bytes`,
    (p) => `Llwyth yn Rhy Fawr - Mae corff y cais yn fwy na ${p.limit} beit`,
  ),
  uri_too_long: m(
    (p) => `URI Too Long - The request URL exceeds ${p.limit} bytes`,
    (p) => `URI yn Rhy Hir - Mae URL y cais yn fwy na ${p.limit} beit`,
  ),
  method_not_allowed: m(
    () => 'Method Not Allowed',
    () => 'Dull heb ei Ganiatáu',
  ),
  snapshot_limit_reached: m(
    (p) =>
      `Bad Request - Snapshot limit reached: server ${p.server_id} already has ${p.used} of ${p.limit} snapshots`,
    (p) =>
      `Cais Gwael - Cyrhaeddwyd terfyn y cipluniau: mae gan weinydd ${p.server_id} ${p.used} o ${p.limit} ciplun yn barod`,
  ),
  backup_limit_reached: m(
    (p) =>
      `Bad Request - Backup limit reached: server ${p.server_id} already has ${p.used} of ${p.limit} manual backups`,
    (p) =>
      `Cais Gwael - Cyrhaeddwyd terfyn y copïau wrth gefn: mae gan weinydd ${p.server_id} ${p.used} o ${p.limit} copi wrth gefn â llaw yn barod`,
  ),
  token_limit_reached: m(
    (p) =>
      `Bad Request - Token limit reached: this account already has ${p.used} of ${p.limit} live tokens; revoke one first`,
    (p) =>
      `Cais Gwael - Cyrhaeddwyd terfyn y tocynnau: mae gan y cyfrif hwn ${p.used} o ${p.limit} tocyn dilys yn barod; dirymwch un yn gyntaf`,
  ),
  invalid_server_state: m(
    (p) =>
      `Bad Request - Server is not in a valid state for ${p.operation}: its status is "${p.status}"` +
      (p.action_id ? ` and action ${p.action_id} (${p.action_kind}) is ${p.action_status} on it` : ''),
    (p) =>
      `Cais Gwael - Nid yw'r gweinydd mewn cyflwr dilys ar gyfer ${p.operation === 'restoration' ? 'adferiad' : p.operation === 'backup' ? 'copi wrth gefn' : p.operation === 'power action' ? 'gweithred pŵer' : 'ciplun'}: ei statws yw "${p.status}"` +
      (p.action_id ? ` ac mae gweithred ${p.action_id} (${p.action_kind}) yn ${p.action_status} arno` : ''),
  ),
  invalid_snapshot_state: m(
    (p) => `Bad Request - Snapshot ${p.snapshot_id} cannot be ${p.operation} while ${p.reason}`,
    (p) =>
      `Cais Gwael - Ni ellir ${p.operation === 'restored' ? 'adfer' : 'dileu'} ciplun ${p.snapshot_id} tra ${p.reason}`,
  ),
  invalid_backup_state: m(
    (p) =>
      `Bad Request - Backup ${p.backup_id} cannot be ${p.operation} while ${BACKUP_STATE_REASONS_EN[p.reason as BackupStateReason] ?? p.reason}`,
    (p) =>
      `Cais Gwael - Ni ellir ${BACKUP_OPERATIONS_CY[p.operation as string] ?? p.operation} copi wrth gefn ${p.backup_id} tra ${BACKUP_STATE_REASONS_CY[p.reason as BackupStateReason] ?? p.reason}`,
  ),
  protected: m(
    (p) =>
      `Bad Request - ${p.backup_id != null ? `Backup ${p.backup_id}` : `Snapshot ${p.snapshot_id}`} is protected against deletion; change its protection first`,
    (p) =>
      `Cais Gwael - Mae ${p.backup_id != null ? `copi wrth gefn ${p.backup_id}` : `ciplun ${p.snapshot_id}`} wedi'i ddiogelu rhag cael ei ddileu; newidiwch ei ddiogelwch yn gyntaf`,
  ),
  action_not_undoable: m(
    (p) =>
      `Bad Request - Action ${p.action_id} cannot be undone: ${NOT_UNDOABLE_REASONS_EN[p.reason as string] ?? p.reason}`,
    (p) =>
      `Cais Gwael - Ni ellir dadwneud gweithred ${p.action_id}: ${NOT_UNDOABLE_REASONS_CY[p.reason as string] ?? p.reason}`,
  ),
  safety_copy_failed: m(
    () =>
      'The safety copy of the server’s disk could not be taken, so the restore did not run and the disk is unchanged; please try again.',
    () =>
      'Nid oedd modd cymryd copi diogelwch o ddisg y gweinydd, felly ni redodd yr adferiad ac mae’r ddisg heb ei newid; rhowch gynnig arall arni.',
  ),
  conflict: m(
    (p) => `Conflict - ${p.what}`,
    (p) => `Gwrthdaro - ${p.what}`,
  ),
  service_unavailable: m(
    (p) => `Service Unavailable - ${p.what} is not reachable; try again shortly`,
    (p) => `Gwasanaeth Ddim ar Gael - Ni ellir cyrraedd ${p.what}; rhowch gynnig arall yn fuan`,
  ),
  rate_limited: m(
    (p) =>
      `Too Many Requests - Rate limit of ${p.limit} ${p.limit_kind === 'writes' ? 'writes' : 'requests'} per minute ` +
      `for this ${p.limit_scope === 'account' ? 'account' : 'token'} exceeded; retry in ${p.retry_after} s`,
    (p) =>
      `Gormod o Geisiadau - Aethpwyd dros y terfyn o ${p.limit} ${p.limit_kind === 'writes' ? 'cais ysgrifennu' : 'cais'} y funud ` +
      `ar gyfer y ${p.limit_scope === 'account' ? 'cyfrif' : 'tocyn'} hwn; rhowch gynnig arall ymhen ${p.retry_after} eiliad`,
  ),
  idempotency_key_reused: m(
    () => 'Bad Request - This Idempotency-Key was already used with a different request',
    () => 'Cais Gwael - Defnyddiwyd yr Idempotency-Key hwn eisoes gyda chais gwahanol',
  ),
  idempotency_key_in_use: m(
    () => 'Conflict - A request with this Idempotency-Key is still being processed; retry shortly',
    () =>
      "Gwrthdaro - Mae cais gyda'r Idempotency-Key hwn yn dal i gael ei brosesu; rhowch gynnig arall yn fuan",
  ),
  internal_error: m(
    () => 'Internal Server Error - Something went wrong on our side; quote the request id when reporting it',
    () => "Gwall Mewnol - Aeth rhywbeth o'i le ar ein hochr ni; dyfynnwch rif y cais wrth ei adrodd",
  ),
  snapshot_create_started: m(
    () => 'Snapshot is being created. This may take 3-10 minutes depending on server size.',
    () => "Mae'r ciplun yn cael ei greu. Gall hyn gymryd 3-10 munud yn dibynnu ar faint y gweinydd.",
  ),
  restore_started: m(
    () => 'Server is being restored from snapshot. This may take 5-15 minutes.',
    () => "Mae'r gweinydd yn cael ei adfer o'r ciplun. Gall hyn gymryd 5-15 munud.",
  ),
  backup_create_started: m(
    () =>
      'Backup is being created. This may take a few minutes depending on how much has changed since the last backup.',
    () =>
      "Mae'r copi wrth gefn yn cael ei greu. Gall hyn gymryd ychydig funudau, yn dibynnu ar faint sydd wedi newid ers y copi wrth gefn diwethaf.",
  ),
  backup_restore_started: m(
    () => 'Server is being restored from backup. This may take a few minutes.',
    () => "Mae'r gweinydd yn cael ei adfer o'r copi wrth gefn. Gall hyn gymryd ychydig funudau.",
  ),
  backup_verify_started: m(
    () =>
      'Backup is being verified: every stored chunk is read back and checked. This may take a few minutes.',
    () =>
      "Mae'r copi wrth gefn yn cael ei wirio: darllenir pob darn sydd wedi'i storio a'i wirio. Gall hyn gymryd ychydig funudau.",
  ),
  // The hypervisor driver's customer-safe sentences (src/hypervisor/driver-errors.ts): one per error
  // code (`hypervisor_<code>`), and the few sharper ones a driver gives for a particular cause.
  hypervisor_domain_not_found: m(
    () => "The server's virtual machine was not found on its host.",
    () => 'Ni chafwyd hyd i beiriant rhithwir y gweinydd ar ei westeiwr.',
  ),
  hypervisor_invalid_power_state: m(
    () => 'The server is not in the power state this operation needs.',
    () => "Nid yw'r gweinydd yn y cyflwr pŵer sydd ei angen ar gyfer y weithred hon.",
  ),
  hypervisor_snapshot_not_found: m(
    () => 'The snapshot does not exist on the host.',
    () => "Nid yw'r ciplun yn bodoli ar y gwesteiwr.",
  ),
  hypervisor_snapshot_exists: m(
    () => 'A snapshot with this id is already stored.',
    () => "Mae ciplun gyda'r rhif adnabod hwn wedi'i storio eisoes.",
  ),
  hypervisor_insufficient_storage: m(
    () => 'There is not enough storage space on the host.',
    () => 'Nid oes digon o le storio ar y gwesteiwr.',
  ),
  hypervisor_copy_failed: m(
    () => 'Copying the disk failed.',
    () => "Methodd copïo'r ddisg.",
  ),
  hypervisor_verification_failed: m(
    () => 'The snapshot is damaged and cannot be used.',
    () => "Mae'r ciplun wedi'i ddifrodi ac ni ellir ei ddefnyddio.",
  ),
  hypervisor_cancelled: m(
    () => 'The operation was cancelled.',
    () => 'Cafodd y weithred ei chanslo.',
  ),
  hypervisor_timeout: m(
    () => 'The operation took too long and was stopped.',
    () => 'Cymerodd y weithred ormod o amser a chafodd ei hatal.',
  ),
  hypervisor_shutdown_timeout: m(
    () =>
      'The server did not shut down within the grace period (its operating system may ignore the shutdown request); stop it to power it off.',
    () =>
      "Ni chaeodd y gweinydd i lawr o fewn y cyfnod gras (efallai fod ei system weithredu'n anwybyddu'r cais i gau); stopiwch ef i'w ddiffodd.",
  ),
  hypervisor_hypervisor_error: m(
    () => 'The hypervisor reported an error.',
    () => 'Adroddodd yr hypervisor wall.',
  ),
  hypervisor_server_must_be_stopped: m(
    () => 'The server must be stopped for this operation.',
    () => "Rhaid i'r gweinydd fod wedi'i stopio ar gyfer y weithred hon.",
  ),
  hypervisor_disk_in_use: m(
    () => 'The server disk is in use by a running virtual machine.',
    () => "Mae disg y gweinydd yn cael ei defnyddio gan beiriant rhithwir sy'n rhedeg.",
  ),
  hypervisor_disk_misplaced: m(
    () => 'The server disk is not where it was expected on the host.',
    () => "Nid yw disg y gweinydd lle'r oedd disgwyl iddi fod ar y gwesteiwr.",
  ),
  hypervisor_no_file_backed_disk: m(
    () => 'The virtual machine has no file-backed disk.',
    () => "Nid oes gan y peiriant rhithwir ddisg sy'n seiliedig ar ffeil.",
  ),
  hypervisor_snapshot_busy: m(
    () => 'Another operation on this snapshot is in progress.',
    () => 'Mae gweithred arall ar y ciplun hwn ar y gweill.',
  ),
  hypervisor_domain_unidentified: m(
    () => "The server's virtual machine could not be identified on its host.",
    () => 'Nid oedd modd adnabod peiriant rhithwir y gweinydd ar ei westeiwr.',
  ),
  // The backup data path's customer-safe sentences (src/backups/data/backup-data-errors.ts): one per
  // error code (`backup_data_<code>`).
  backup_data_backup_corrupt: m(
    () => 'The backup is damaged and cannot be used.',
    () => "Mae'r copi wrth gefn wedi'i ddifrodi ac ni ellir ei ddefnyddio.",
  ),
  backup_data_backup_key_unavailable: m(
    () => "The backup's encryption key is not available.",
    () => "Nid yw allwedd amgryptio'r copi wrth gefn ar gael.",
  ),
  backup_data_backup_base_unavailable: m(
    () => 'The previous backup this one builds on is no longer available. Please try again.',
    () =>
      "Nid yw'r copi wrth gefn blaenorol y mae hwn yn adeiladu arno ar gael mwyach. Rhowch gynnig arall arni.",
  ),
  // A backup store with no room left (the action's `backup_storage_full`, src/jobs/operation-failure.ts).
  backup_storage_full: m(
    () => 'Backup storage is full; please try again later or contact support.',
    () =>
      "Mae'r storfa copïau wrth gefn yn llawn; rhowch gynnig arall arni'n nes ymlaen neu cysylltwch â chymorth.",
  ),
  webhook_not_found: m(
    () => 'Not Found - Webhook does not exist',
    () => "Heb ei Ganfod - Nid yw'r bachyn gwe yn bodoli",
  ),
  webhook_limit_reached: m(
    (p) =>
      `Bad Request - Webhook limit reached: this account already has ${p.used} of ${p.limit} webhooks; delete one first`,
    (p) =>
      `Cais Gwael - Cyrhaeddwyd terfyn y bachau gwe: mae gan y cyfrif hwn ${p.used} o ${p.limit} bachyn gwe yn barod; dilëwch un yn gyntaf`,
  ),
  // Why a webhook URL is refused (`webhook_url_not_allowed`), one per TargetRefusal.
  webhook_url_scheme: m(
    () => 'Bad Request - A webhook URL must be https',
    () => 'Cais Gwael - Rhaid i URL bachyn gwe fod yn https',
  ),
  webhook_url_address: m(
    (p) =>
      `Bad Request - A webhook URL must reach a public address; ${p.address} is private, loopback, link-local or reserved`,
    (p) =>
      `Cais Gwael - Rhaid i URL bachyn gwe gyrraedd cyfeiriad cyhoeddus; mae ${p.address} yn breifat, yn ddolen-ôl, yn gyswllt-lleol neu wedi'i gadw`,
  ),
  webhook_url_unresolved: m(
    (p) => `Bad Request - The webhook URL's host ${p.host} does not resolve to an address`,
    (p) => `Cais Gwael - Nid yw gwesteiwr ${p.host} URL y bachyn gwe yn cyfateb i gyfeiriad`,
  ),
  invalid_label_selector: m(
    (p) => `Bad Request - Invalid label_selector at character ${p.position}: ${p.reason}`,
    (p) => `Cais Gwael - Mae label_selector yn annilys wrth nod ${p.position} (gweler y maes "reason")`,
  ),
} satisfies Record<string, Message>;

export type MessageKey = keyof typeof MESSAGES;
/** The hypervisor driver's sentences (see `HypervisorError`). */
export type HypervisorMessageKey = Extract<MessageKey, `hypervisor_${string}`>;
/** The backup data path's sentences (see `BackupDataError`). */
export type BackupDataMessageKey = Extract<MessageKey, `backup_data_${string}`>;

export function message(key: MessageKey, lang: Lang, params: Params = {}): string {
  return MESSAGES[key][lang](params);
}

/** Language ranges read from an Accept-Language header; a browser sends a handful. */
export const MAX_LANGUAGE_RANGES = 16;
/** A language range with its weight (`zh-Hant-TW;q=0.85`) is far shorter; longer ones are skipped unread. */
const MAX_RANGE_LENGTH = 64;

/**
 * Picks Welsh when the client prefers it (RFC 9110 Accept-Language, q-values honoured), else English.
 * Reads at most the first MAX_LANGUAGE_RANGES ranges, so its cost is bounded whatever the header's size.
 */
export function languageOf(acceptLanguage: string | string[] | undefined): Lang {
  const header = Array.isArray(acceptLanguage) ? acceptLanguage.join(',') : (acceptLanguage ?? '');
  let best: { lang: Lang; q: number } = { lang: 'en', q: 0 };
  let start = 0;
  for (let n = 0; n < MAX_LANGUAGE_RANGES && start <= header.length; n++) {
    let end = header.indexOf(',', start);
    if (end === -1) end = header.length;
    const part = end - start <= MAX_RANGE_LENGTH ? header.slice(start, end) : '';
    start = end + 1;
    const [tag, ...attrs] = part.trim().toLowerCase().split(';');
    const qAttr = attrs.map((a) => a.trim()).find((a) => a.startsWith('q='));
    const q = qAttr ? Number(qAttr.slice(2)) : 1;
    if (!Number.isFinite(q) || q <= 0) continue;
    const lang: Lang | null =
      tag === 'cy' || tag.startsWith('cy-') ? 'cy' : tag === 'en' || tag.startsWith('en-') ? 'en' : null;
    if (lang && q > best.q) best = { lang, q };
  }
  return best.lang;
}
