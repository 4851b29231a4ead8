/**
 * The interactive docs page at /api/docs, driven in headless Chromium (Debian's
 * `chromium` package through playwright-core; no browser is downloaded). It must render the snapshot
 * endpoints from the served document, without a token, and show the published examples.
 * Skipped, loudly, only where /usr/bin/chromium is absent (`apt-get install -y chromium`).
 */
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Browser, chromium } from 'playwright-core';
import { createTestDatabase, startApi, TestApi, TestDatabase, testConfig } from '../support/test-env';

const CHROMIUM = '/usr/bin/chromium';
const present = existsSync(CHROMIUM);
if (!present) {
  process.stderr.write(
    `\n!! ${CHROMIUM} is missing: the /api/docs browser test is SKIPPED (apt-get install -y chromium)\n\n`,
  );
}

(present ? describe : describe.skip)('/api/docs in headless Chromium', () => {
  let db: TestDatabase;
  let api: TestApi;
  let browser: Browser;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApi(testConfig(db, 'api'));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await api?.close();
    await db?.drop();
  });

  it('renders the snapshot endpoints and the published examples, with no token and no script errors', async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const failed: string[] = [];
    page.on('requestfailed', (r) => failed.push(`${r.url()} ${r.failure()?.errorText ?? ''}`));
    try {
      const res = await page.goto(`${api.url}/api/docs`, { waitUntil: 'load' });
      expect(res?.status()).toBe(200);
      await page.waitForSelector('.opblock', { timeout: 20_000 });
      expect(await page.locator('.info .title').innerText()).toContain('admin.vps.org API');

      const operations = await page.locator('.opblock').evaluateAll((blocks) =>
        blocks.map((b) => ({
          method: b.querySelector('.opblock-summary-method')?.textContent?.trim(),
          path: b.querySelector('.opblock-summary-path')?.getAttribute('data-path'),
        })),
      );
      expect(operations).toEqual(
        expect.arrayContaining([
          { method: 'GET', path: '/api/v1/snapshots/' },
          { method: 'POST', path: '/api/v1/snapshots/' },
          { method: 'GET', path: '/api/v1/snapshots/{snapshot_id}/' },
          { method: 'DELETE', path: '/api/v1/snapshots/{snapshot_id}/' },
          { method: 'POST', path: '/api/v1/snapshots/{snapshot_id}/restore/' },
          { method: 'GET', path: '/api/v1/actions/{action_id}/' },
          { method: 'GET', path: '/api/v1/servers/' },
        ]),
      );
      const tags = await page.locator('.opblock-tag').allInnerTexts();
      expect(tags.join('\n')).toContain('snapshots');

      // Open "Create a snapshot": its 201 shows the published example body.
      const create = page.locator('#operations-snapshots-createSnapshot');
      await create.locator('.opblock-summary').click();
      await create.locator('.responses-wrapper').waitFor({ timeout: 10_000 });
      const text = await create.innerText();
      expect(text).toContain('Snapshot creation started');
      expect(text).toContain('before-update-snapshot');
      expect(text).toContain(
        'Snapshot is being created. This may take 3-10 minutes depending on server size.',
      );
      expect(text).toContain('application/problem+json');

      // The page offers bearer authorization.
      expect(await page.locator('.btn.authorize').count()).toBeGreaterThan(0);

      const shots = path.join(os.tmpdir(), 'vps-openapi');
      mkdirSync(shots, { recursive: true });
      await page.screenshot({ path: path.join(shots, 'api-docs.png'), fullPage: false });
      expect(pageErrors).toEqual([]);
      expect(failed).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
