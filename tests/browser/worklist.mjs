// Drives the worklist page in Debian's Chromium with playwright-core (no
// downloaded browsers) against a running node:
//   WORKLIST_URL       the page, e.g. http://127.0.0.1:8080/
//   TOKEN              a radiologist token
//   FLAGGED_ACCESSION  accession of a study the AI flagged (expected first)
//   CLEAN_ACCESSION    accession of a study the AI did not flag
//   SCREENSHOT_DIR     where list.png, detail.png, ... go (default: .)
//   CHROMIUM           the browser (default /usr/bin/chromium)
// Both studies must be unreviewed ("new") when the test starts. It records an
// Agree on the flagged study and, after a simulated colleague's review, an
// Uncertain on the clean one. Exits non-zero with a clear message on failure.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`worklist.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
}
const PAGE_URL = need('WORKLIST_URL');
const TOKEN = need('TOKEN');
const FLAGGED = need('FLAGGED_ACCESSION');
const CLEAN = need('CLEAN_ACCESSION');
const SHOTS = process.env.SCREENSHOT_DIR || '.';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

fs.mkdirSync(SHOTS, { recursive: true });
const origin = new URL(PAGE_URL).origin;
const problems = [];   // CSP violations and uncaught page errors
let current = 'start';
let page;

function check(cond, message) {
  if (!cond) throw new Error(message);
}
async function step(name, fn) {
  current = name;
  const t = Date.now();
  await fn();
  console.log(`ok - ${name} (${Date.now() - t} ms)`);
}
function watch(p) {
  p.on('pageerror', (e) => problems.push('page error: ' + e.message));
  p.on('console', (m) => {
    const t = m.text();
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(t)) problems.push('CSP: ' + t);
  });
}
const shot = (name) => page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
const text = (sel) => page.locator(sel).first().innerText();

// The API as a colleague at another workstation would use it.
async function apiCall(method, p, body) {
  const res = await fetch(origin + p, {
    method,
    headers: { Authorization: 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  });
  let json = null;
  try { json = await res.json(); } catch (e) { json = null; }
  return { status: res.status, json };
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 60000 });
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  page = await context.newPage();
  page.setDefaultTimeout(20000);
  watch(page);
  let model = '';

  await step('the page opens with the token from the URL fragment, which leaves the address bar', async () => {
    await page.goto(PAGE_URL.replace(/#.*$/, '') + '#token=' + encodeURIComponent(TOKEN));
    await page.locator('[data-testid="worklist-view"]').waitFor({ state: 'visible' });
    check(!page.url().includes('token='), 'the token is still in the address bar: ' + page.url());
    check((await text('#product-name')).includes('secondread — AI second read worklist'), 'product name missing');
    check((await text('[data-testid="ai-notice"]')).includes('AI results are for radiologist review only. Not a diagnosis.'),
      'the permanent AI notice is missing');
  });

  await step('the worklist shows both studies, the flagged one first', async () => {
    // The list refreshes every 10 s; give the node a few refreshes.
    await page.waitForFunction(([a, b]) => {
      const acc = [...document.querySelectorAll('[data-testid="worklist-row"]')].map((r) => r.dataset.accession);
      return acc.includes(a) && acc.includes(b);
    }, [FLAGGED, CLEAN], { timeout: 45000 }).catch(async () => {
      const acc = await page.$$eval('[data-testid="worklist-row"]', (rs) => rs.map((r) => r.dataset.accession));
      throw new Error(`expected rows ${FLAGGED} and ${CLEAN}, the list shows [${acc.join(', ')}]`);
    });
    const rows = page.locator('[data-testid="worklist-row"]');
    const first = rows.first();
    check(await first.getAttribute('data-accession') === FLAGGED,
      `first row is ${await first.getAttribute('data-accession')}, expected the flagged study ${FLAGGED}`);
    check(await first.getAttribute('data-flagged') === 'true', 'the first row is not marked flagged');
    check(await first.locator('[data-testid="flag-marker"]').count() === 1, 'no flag marker on the flagged row');
    const clean = page.locator(`[data-testid="worklist-row"][data-accession="${CLEAN}"]`);
    check(await clean.getAttribute('data-flagged') === 'false', 'the clean study is marked flagged');
    check(await clean.locator('[data-testid="flag-marker"]').count() === 0, 'flag marker on the clean row');
    check(/, /.test(await first.locator('[data-testid="row-open"]').innerText()), 'patient name not shown as "LAST, FIRST"');
    model = await first.getAttribute('data-model');
    check(model, 'the flagged row names no model');
    await shot('list.png');
  });

  await step('nothing is kept in browser storage', async () => {
    const st = await page.evaluate(() => ({ l: localStorage.length, s: sessionStorage.length, c: document.cookie }));
    check(st.l === 0 && st.s === 0 && st.c === '', 'browser storage used: ' + JSON.stringify(st));
  });

  await step('keyboard: j/k move the selection, Enter opens the flagged study', async () => {
    await page.locator('#worklist-title').click();
    await page.keyboard.press('j');
    await page.keyboard.press('k');
    const sel = await page.locator('[data-testid="worklist-row"].is-selected').getAttribute('data-accession');
    check(sel === FLAGGED, `selected row is ${sel} after j, k; expected ${FLAGGED}`);
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="study-detail"]').waitFor({ state: 'visible' });
    await page.waitForFunction((acc) => {
      const el = document.querySelector('[data-testid="detail-accession"]');
      return el && el.textContent === acc;
    }, FLAGGED);
  });

  await step('the detail shows the preview image, the finding above the operating point and the disclaimer', async () => {
    await page.waitForFunction(() => {
      const img = document.querySelector('[data-testid="preview-image"]');
      return img && img.complete && img.naturalWidth > 0;
    }, null, { timeout: 30000 }).catch(async () => {
      const n = await page.locator('[data-testid="preview-image"]').count();
      throw new Error(`the preview image did not load (${n} image elements): ` + (await text('#detail-images')));
    });
    const src = await page.locator('[data-testid="preview-image"]').first().getAttribute('src');
    check(src && src.startsWith('blob:'), 'the preview is not shown through a blob URL: ' + src);
    const verdicts = await page.locator('[data-testid="finding-verdict"]').allInnerTexts();
    check(verdicts.some((v) => v.includes('ABOVE operating point')), 'no finding ABOVE operating point: ' + verdicts.join('; '));
    check((await text('[data-testid="disclaimer"]')).trim().length > 0, 'no disclaimer');
    check((await text('[data-testid="detail-patient-name"]')).includes(','), 'patient name not formatted');
    await shot('detail.png');
  });

  await step('Agree records the review and shows the new status', async () => {
    await page.locator('[data-testid="btn-agree"]').click();
    await page.waitForFunction(() => {
      const s = document.querySelector('[data-testid="review-status"]');
      const st = document.querySelector('[data-testid="study-status"] .status');
      return s && !s.hidden && s.dataset.kind && s.dataset.kind !== 'pending' && st && st.dataset.status === 'agreed';
    }).catch(async () => {
      throw new Error('after Agree: review status "' + (await text('[data-testid="review-status"]')) +
        '", study status "' + (await text('[data-testid="study-status"]')) + '"');
    });
    check(await page.locator('[data-testid="review-status"]').getAttribute('data-kind') === 'success',
      'review not shown as recorded: ' + (await text('[data-testid="review-status"]')));
    check((await text('[data-testid="study-status"]')).includes('Agreed'), 'status is not shown as Agreed');
    await page.locator('[data-testid="review-history-item"][data-verdict="agree"]').first().waitFor();
    await shot('detail-agreed.png');
  });

  await step('Escape returns to the worklist', async () => {
    await page.keyboard.press('Escape');
    await page.locator('[data-testid="worklist-view"]').waitFor({ state: 'visible' });
    await page.locator(`[data-testid="worklist-row"][data-accession="${CLEAN}"]`).waitFor();
  });

  await step('a review that raced a colleague\'s is refused (409), shown, and can be decided again', async () => {
    await page.locator(`[data-testid="worklist-row"][data-accession="${CLEAN}"] [data-testid="row-open"]`).click();
    await page.waitForFunction((acc) => {
      const el = document.querySelector('[data-testid="detail-accession"]');
      return el && el.textContent === acc;
    }, CLEAN);
    const detail = page.locator('[data-testid="study-detail"]');
    const id = await detail.getAttribute('data-study-id');
    const seen = Number(await detail.getAttribute('data-version'));
    // A colleague reviews the same study first.
    const other = await apiCall('POST', `/api/v1/studies/${id}/reviews`,
      { verdict: 'uncertain', comment: 'colleague: needs lateral view', expected_version: seen });
    check(other.status === 201, `the colleague's review answered ${other.status}: ${JSON.stringify(other.json)}`);
    await page.locator('[data-testid="btn-uncertain"]').click();
    await page.waitForFunction(() => {
      const s = document.querySelector('[data-testid="review-status"]');
      return s && !s.hidden && s.dataset.kind && s.dataset.kind !== 'pending';
    });
    const kind = await page.locator('[data-testid="review-status"]').getAttribute('data-kind');
    const msg = await text('[data-testid="review-status"]');
    check(kind === 'conflict', `expected the conflict message, got ${kind}: ${msg}`);
    check(/Uncertain/.test(msg), 'the conflict message does not show the other verdict: ' + msg);
    await page.waitForFunction((v) => Number(document.querySelector('[data-testid="study-detail"]').dataset.version) > v, seen);
    await shot('detail-conflict.png');
    await page.locator('[data-testid="btn-uncertain"]').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="review-status"]').dataset.kind === 'success');
  });

  await step('the performance view shows the model with the review: agreement 100%', async () => {
    await page.locator('[data-testid="nav-performance"]').click();
    await page.locator('[data-testid="perf-view"]').waitFor({ state: 'visible' });
    const card = page.locator(`[data-testid="perf-model"][data-model="${model}"]`).first();
    await card.waitFor().catch(() => { throw new Error('no performance section for model ' + model); });
    const reviewed = Number(await card.locator('[data-testid="perf-reviewed"]').innerText());
    const agreement = (await card.locator('[data-testid="perf-agreement"]').innerText()).trim();
    check(reviewed >= 1, `reviewed count ${reviewed}, expected at least 1`);
    check(agreement === (process.env.EXPECT_AGREEMENT || '100%'), `agreement rate ${agreement}, expected ${process.env.EXPECT_AGREEMENT || '100%'}`);
    check(await card.locator('svg[data-testid="perf-chart"] path').count() >= 1, 'no line in the chart');
    await shot('performance.png');
  });

  await step('a wrong token shows the sign-in form; signing in there opens the worklist', async () => {
    const p2 = await context.newPage();
    watch(p2);
    await p2.goto(PAGE_URL.replace(/#.*$/, '') + '#token=not-a-valid-token');
    await p2.locator('[data-testid="signin"]').waitFor({ state: 'visible' });
    await p2.locator('[data-testid="signin-error"]').waitFor({ state: 'visible' });
    await p2.locator('[data-testid="signin-token"]').fill(TOKEN);
    await p2.locator('[data-testid="signin-submit"]').click();
    await p2.locator('[data-testid="worklist-view"]').waitFor({ state: 'visible' });
    await p2.close();
  });

  await step('no Content-Security-Policy violation and no script error', async () => {
    check(problems.length === 0, problems.join('\n'));
  });
} catch (e) {
  failed = true;
  console.error(`FAIL - ${current}: ${e.message}`);
  if (page) await shot('failure.png').catch(() => {});
} finally {
  await browser.close().catch(() => {});
}
if (failed) process.exit(1);
console.log('worklist browser test: all checks passed; screenshots in ' + SHOTS);
