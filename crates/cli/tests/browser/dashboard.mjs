// The dashboard end to end in headless Chromium, driven by playwright-core
// (run by crates/cli/tests/dashboard.rs against a real `serve`):
//
//   node dashboard.mjs BASE_URL
//
// Environment: DASHBOARD_API_KEY (the key the page must ask for),
// DASHBOARD_AUDIO (a speech file to upload), DASHBOARD_JUNK (a file that is
// not audio), DASHBOARD_ARTIFACTS (where screenshots go), CHROMIUM (the
// browser, default /usr/bin/chromium). Exits non-zero on any failure.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const base = process.argv[2];
const key = process.env.DASHBOARD_API_KEY || '';
const audioFile = process.env.DASHBOARD_AUDIO;
const junkFile = process.env.DASHBOARD_JUNK;
const artifacts = process.env.DASHBOARD_ARTIFACTS || path.join(os.tmpdir(), 'dashboard-artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// Transcribing on a small shared CI machine can be slow.
const JOB_TIMEOUT_MS = Number(process.env.DASHBOARD_JOB_TIMEOUT_MS || 240000);

if (!base || !audioFile || !junkFile) {
  console.error('usage: DASHBOARD_AUDIO=... DASHBOARD_JUNK=... node dashboard.mjs BASE_URL');
  process.exit(2);
}

const sel = (testid, extra = '') => `[data-testid="${testid}"]${extra}`;

function step(text) {
  console.log(`[dashboard] ${text}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

fs.mkdirSync(artifacts, { recursive: true });
// A fresh profile per run: nothing from an earlier run (a stored key, a
// cache) may make the test pass.
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-chromium-'));
const problems = [];

const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  // Without the networking flags Chromium keeps trying to reach Google's
  // services, which on a closed network stalls start-up and page loads.
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
  viewport: { width: 1400, height: 1000 },
  timeout: 60000,
});

let page;
try {
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(30000);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`[browser console] ${m.text()}`);
  });

  step(`open ${base}/`);
  const response = await page.goto(`${base}/`);
  check(response && response.status() === 200, `GET / answered ${response && response.status()}`);

  if (key) {
    step('the page asks for the API key once');
    await page.locator(sel('key-panel')).waitFor({ state: 'visible' });
    await page.locator(sel('key-input')).fill(key);
    await page.locator(sel('key-save')).click();
    await page.locator(sel('key-panel')).waitFor({ state: 'hidden' });
    const stored = await page.evaluate(() => localStorage.getItem('pipeline-manager.api-key'));
    check(stored === key, 'the key is kept in localStorage');
  }

  step(`upload ${path.basename(audioFile)} through the form`);
  await page.locator(sel('upload-file')).setInputFiles(audioFile);
  await page.locator(sel('upload-submit')).click();
  const detail = page.locator(sel('detail'));
  await detail.waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.querySelector('[data-testid="detail"]').dataset.id);
  const id = await detail.getAttribute('data-id');
  step(`uploaded as ${id}`);

  step('wait for COMPLETED on the page (fed by the event stream)');
  await page.locator(sel('detail-status', '[data-status="COMPLETED"]'))
    .waitFor({ timeout: JOB_TIMEOUT_MS });
  const row = page.locator(sel('file-row', `[data-id="${id}"]`));
  await row.locator(sel('file-status', '[data-status="COMPLETED"]')).waitFor({ timeout: 20000 });
  const jobs = await page.locator(sel('job')).evaluateAll((items) => items.map((j) => ({
    type: j.dataset.jobType,
    status: j.dataset.status,
    progress: j.querySelector('[data-testid="job-progress"]').dataset.progress,
  })));
  console.log(JSON.stringify(jobs));
  check(jobs.length === 2, `two jobs shown, got ${jobs.length}`);
  check(jobs.every((j) => j.status === 'COMPLETED' && Number(j.progress) === 100),
    'every job COMPLETED with a full progress bar');
  const trail = await page.locator(sel('event')).count();
  check(trail >= 6, `the audit trail shows created, claimed and completed for both jobs (${trail})`);

  step('the transcript and the player');
  // Segments may show live while transcribing; wait for the stored ones.
  await page.locator(sel('segments', '[data-final="true"]')).waitFor({ state: 'attached' });
  await page.locator(sel('segment')).first().waitFor();
  await page.locator(sel('player', '[data-ready="true"]')).waitFor();
  const segments = await page.locator(sel('segment')).evaluateAll((items) => items.map((s) => ({
    start: Number(s.dataset.start),
    end: Number(s.dataset.end),
    text: s.querySelector('[data-testid="segment-text"]').textContent,
  })));
  console.log(JSON.stringify(segments));
  check(segments.length > 0 && segments.every((s) => s.text.trim()), 'segments with text');
  const duration = await page.locator(sel('player')).evaluate((a) => a.duration);
  check(Math.abs(duration - segments.at(-1).end) < 5,
    `the player holds the uploaded audio (duration ${duration})`);

  // The last segment starts latest, so reaching it proves a real seek.
  const index = segments.length - 1;
  const target = segments[index];
  step(`click segment ${index} (starts at ${target.start} s)`);
  await page.locator(sel('segment')).nth(index).click();
  const position = await page.waitForFunction((start) => {
    const t = document.querySelector('[data-testid="player"]').currentTime;
    return t >= start - 0.05 && t <= start + 1.5 ? t : false;
  }, target.start, { timeout: 5000 }).then((h) => h.jsonValue())
    .catch(async () => page.locator(sel('player')).evaluate((a) => a.currentTime));
  check(Math.abs(position - target.start) <= 1.5,
    `the player seeks to the segment: currentTime ${position}, segment start ${target.start}`);
  step(`player at ${position.toFixed(2)} s`);
  await page.locator(sel('player')).evaluate((a) => a.pause());

  const screenshot = path.join(artifacts, 'dashboard.png');
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);

  step('a reload keeps the key and the selected file');
  await page.reload();
  await page.locator(sel('detail-status', '[data-status="COMPLETED"]')).waitFor();
  check(await page.locator(sel('key-panel')).isHidden(), 'no second key prompt');
  check(await detail.getAttribute('data-id') === id, 'the same file is selected');

  step(`upload ${path.basename(junkFile)}, which is not audio, then retry it`);
  await page.locator(sel('upload-file')).setInputFiles(junkFile);
  await page.locator(sel('upload-submit')).click();
  await page.locator(sel('upload-message')).filter({ hasText: 'refused' }).waitFor();
  await page.waitForFunction((first) => {
    const d = document.querySelector('[data-testid="detail"]');
    return d.dataset.id && d.dataset.id !== first;
  }, id);
  await page.locator(sel('detail-status', '[data-status="FAILED"]')).waitFor();
  const junkId = await detail.getAttribute('data-id');
  await page.locator(sel('file-row', `[data-id="${junkId}"][data-status="FAILED"]`))
    .waitFor({ timeout: 20000 });
  const retry = page.locator(sel('retry'));
  await retry.waitFor({ state: 'visible' });
  await retry.click();
  // The audit trail is folded away; the entry only has to be there.
  await page.locator(sel('event')).filter({ hasText: 'retried by user' }).first()
    .waitFor({ state: 'attached', timeout: 20000 });
  const retryShot = path.join(artifacts, 'dashboard-retry.png');
  await page.screenshot({ path: retryShot, fullPage: true });
  console.log(`screenshot: ${retryShot}`);

  check(problems.length === 0, problems.join('\n'));
  step('all checks passed');
} catch (e) {
  console.error(`[dashboard] FAILED: ${e.stack || e}`);
  for (const p of problems) console.error(p);
  if (page) {
    const shot = path.join(artifacts, 'dashboard-failure.png');
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error(`screenshot: ${shot}`);
    const text = await page.locator('body').innerText().catch(() => '');
    console.error(`--- page text ---\n${text}`);
  }
  process.exitCode = 1;
} finally {
  await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
