// Drives the gridlink dashboard in headless Chromium (run by
// cloud/tests/dashboard.rs, which starts the cloud, the broker and a VEN).
//
// Env: DASHBOARD_URL, VIEWER_TOKEN, OPERATOR_TOKEN, TRIGGER_URL (GET
// /publish?value=W makes the VEN publish a reading), VEN_ID, SCREENSHOTS
// (a directory), EXPECT_ALERT (set: an alert must be listed).
//
// Every wait is for the DOM, with generous time-outs (hang guards only);
// the live update's delay is measured and printed, not asserted.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('DASHBOARD_URL');
const viewerToken = env('VIEWER_TOKEN');
const operatorToken = env('OPERATOR_TOKEN');
const trigger = env('TRIGGER_URL');
const venId = env('VEN_ID');
const shots = env('SCREENSHOTS');
const TIMEOUT = 30000;

const profile = mkdtempSync(join(tmpdir(), 'gridlink-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(TIMEOUT);

const problems = [];
function watch(page, who) {
  page.on('pageerror', (error) => problems.push(`${who}: page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') {
      const text = message.text();
      // Expected answers the page handles: the 401 of the unknown token,
      // the 400 of the invalid event, 404s of routes this server lacks.
      if (/status of (400|401|404)/.test(text)) return;
      problems.push(`${who}: console error: ${text}`);
    }
  });
}

function step(text) {
  console.log(`[${new Date().toISOString()}] ${text}`);
}

/** Every form control has a label, every table column a header. */
async function checkAccessible(page, name) {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((c) => !c.closest('[hidden]'))
    .filter((c) => !(c.labels?.length || c.getAttribute('aria-label') || (c.tagName === 'BUTTON' && c.textContent.trim())))
    .map((c) => c.outerHTML.slice(0, 80)));
  const headerless = await page.evaluate(() => [...document.querySelectorAll('table')]
    .filter((t) => !t.querySelector('thead th[scope="col"]')).length);
  if (unlabelled.length || headerless) {
    throw new Error(`${name}: unlabelled controls ${JSON.stringify(unlabelled)}, ${headerless} tables without headers`);
  }
}

async function shot(page, name) {
  await checkAccessible(page, name);
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  step(`screenshot ${name}.png`);
}

async function signIn(page, token) {
  await page.goto(`${base}/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#nav').waitFor({ state: 'visible' });
}

let failed = false;
try {
  // --- viewer, on a phone-sized screen ---
  const viewer = await context.newPage();
  watch(viewer, 'viewer');
  await viewer.setViewportSize({ width: 390, height: 844 });
  await viewer.goto(`${base}/`);
  if (!viewer.url().endsWith('/dashboard/')) throw new Error(`/ did not redirect: ${viewer.url()}`);
  step('sign-in page shown');
  await shot(viewer, 'sign-in');
  await viewer.getByLabel('API token').fill(`glk_${'0'.repeat(64)}`);
  await viewer.getByRole('button', { name: 'Sign in' }).click();
  await viewer.locator('#sign-in-error', { hasText: 'not valid' }).waitFor();
  step('an unknown token is refused');

  await viewer.getByLabel('API token').fill(viewerToken);
  await viewer.keyboard.press('Enter');
  const row = viewer.locator(`tr[data-ven="${venId}"]`);
  await row.waitFor();
  await row.locator('.badge.online').waitFor();
  await viewer.locator('#total-import', { hasNotText: '–' }).waitFor();
  step(`overview lists ${venId}: ${(await row.innerText()).replace(/\s+/g, ' ')}`);
  await shot(viewer, 'overview');

  // --- the site page: live value changes after a new reading ---
  await row.getByRole('link', { name: venId }).click();
  await viewer.locator('#live-state', { hasText: 'live' }).waitFor();
  await viewer.locator('#history-info', { hasText: 'points' }).waitFor();
  step(`history: ${await viewer.locator('#history-info').innerText()}`);
  await viewer.locator('#loads tr', { hasText: 'heat-pump' }).waitFor();
  const before = await viewer.locator('#live-value').innerText();
  const value = 4000 + Math.floor(Math.random() * 900);
  const response = await fetch(`${trigger}/publish?value=${value}`);
  if (!response.ok) throw new Error(`trigger: ${response.status}`);
  const published = Date.now();
  await viewer.locator('#live-value', { hasText: `${value} W` }).waitFor();
  step(`live value ${before} -> ${value} W, ${Date.now() - published} ms after the publish was handed to the VEN's MQTT client`);
  // The per-phase history selection works too.
  await viewer.getByLabel('Phase').selectOption('L1');
  await viewer.getByLabel('Range').selectOption('2h');
  await viewer.getByRole('button', { name: 'Show' }).click();
  await viewer.locator('#history-info', { hasText: 'active_power L1' }).waitFor();
  step(`history: ${await viewer.locator('#history-info').innerText()}`);
  await shot(viewer, 'site');

  // --- events: a viewer cannot create ---
  await viewer.goto(`${base}/dashboard/#/events`);
  await viewer.getByRole('heading', { name: 'Events', exact: true }).waitFor();
  await viewer.locator('#event-list table').waitFor();
  if (await viewer.locator('#create-event').count() !== 0) throw new Error('a viewer sees "create event"');
  step('a viewer has no "create event"');

  // --- operator: create an event, invalid first ---
  const operator = await context.newPage();
  watch(operator, 'operator');
  await signIn(operator, operatorToken);
  await operator.goto(`${base}/dashboard/#/events`);
  const form = operator.locator('#create-event');
  await form.waitFor();
  const programField = operator.getByLabel('New program name');
  if (await programField.isVisible()) await programField.fill(`browser test ${Date.now()}`);
  await operator.getByLabel('Event name').fill('browser peak');
  // A target longer than openadr3.yaml's 128 characters (targets are
  // otherwise opaque strings the VTN accepts).
  await operator.getByLabel('Targets').fill('x'.repeat(129));
  await operator.getByRole('button', { name: 'Create and dispatch' }).click();
  const targetsError = operator.locator('#ev-targets-error');
  await operator.locator('#ev-targets[aria-invalid="true"]').waitFor();
  step(`invalid event refused, shown at Targets: "${await targetsError.innerText()}"`);
  await shot(operator, 'events-invalid');
  // The program now exists (made before the refused event): pick it.
  await operator.getByLabel('Targets').fill(venId);
  await operator.getByRole('button', { name: 'Create and dispatch' }).click();
  await operator.locator('#event-vens table').waitFor();
  if (!/#\/event\//.test(operator.url())) throw new Error(`not on the event page: ${operator.url()}`);
  const ackState = operator.locator(`tr[data-ven="${venId}"] .ven-ack-state`);
  await ackState.filter({ hasText: 'received' }).waitFor();
  step(`event created; ${venId} answered: ${await ackState.innerText()}`);
  await shot(operator, 'event-status');
  // It runs now: the overview lists it at the VEN, linked.
  await operator.goto(`${base}/dashboard/#/overview`);
  await operator.locator(`tr[data-ven="${venId}"]`).getByRole('link', { name: 'browser peak' }).waitFor();
  await operator.locator('#total-events', { hasText: '1' }).waitFor();
  step('the overview shows the running event at the VEN');
  await operator.goto(`${base}/dashboard/#/events`);
  await operator.locator('#event-timeline svg rect').first().waitFor();
  await shot(operator, 'events');

  // --- alerts ---
  await operator.goto(`${base}/dashboard/#/alerts`);
  await operator.locator('#alert-list > *').first().waitFor();
  if (process.env.EXPECT_ALERT) {
    // A real anomaly: the VEN reports negative power on its import-only
    // grid meter; the alert rules open `negative_import` (the page
    // refreshes every 5 s).
    const response = await fetch(`${trigger}/publish?value=-500`);
    if (!response.ok) throw new Error(`trigger: ${response.status}`);
    const alertRow = operator.locator('#alert-list tr[data-rule="negative_import"]').first();
    await alertRow.waitFor({ timeout: 60000 });
    step(`alert shown: ${(await alertRow.innerText()).replace(/\s+/g, ' ')}`);
    await shot(operator, 'alerts');
    await alertRow.getByRole('button', { name: /^Acknowledge/ }).click();
    await alertRow.locator('td', { hasText: 'by operator (browser test)' }).waitFor();
    step('alert acknowledged');
    // A viewer sees it, without the button.
    await viewer.goto(`${base}/dashboard/#/alerts`);
    await viewer.locator('#alert-list tr[data-rule="negative_import"]').first().waitFor();
    if (await viewer.getByRole('button', { name: /^Acknowledge/ }).count() !== 0) throw new Error('a viewer may acknowledge');
    step('a viewer sees the alert, without Acknowledge');
  } else {
    step(`alerts page: ${(await operator.locator('#alert-list').innerText()).slice(0, 120)}`);
  }
  await shot(operator, 'alerts');

  // --- projects: one made through the API, with the VEN ---
  const made = await fetch(`${base}/api/v1/projects`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${operatorToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      name: 'Depot North PV', kind: 'renewable', status: 'operational', capacity_kw: 250, currency: 'EUR',
      location: { latitude: 52.1, longitude: 5.1, address: 'Dijkweg 1' }, ven_ids: [venId],
      milestones: [{ name: 'First MWh', quantity: 'consumed', threshold_kwh: 1000 }],
    }),
  });
  if (made.status === 404) {
    step('projects API not on this server');
  } else if (!made.ok) {
    throw new Error(`creating a project: ${made.status} ${await made.text()}`);
  }
  await operator.goto(`${base}/dashboard/#/projects`);
  await operator.locator('#project-list > *').first().waitFor();
  if (made.ok) {
    const project = operator.locator('#project-list tr[data-project]', { hasText: 'Depot North PV' });
    await project.getByRole('button', { name: 'Show figures of Depot North PV' }).click();
    await operator.locator('#project-detail table').first().waitFor();
    await project.getByRole('link', { name: venId }).waitFor();
    step(`project figures: ${(await operator.locator('#project-detail').innerText()).replace(/\s+/g, ' ').slice(0, 160)}`);
  } else {
    step(`projects page: ${(await operator.locator('#project-list').innerText()).slice(0, 120)}`);
  }
  await shot(operator, 'projects');

  // --- sign out ---
  await operator.getByRole('button', { name: 'Sign out' }).click();
  await operator.getByLabel('API token').waitFor();
  step('signed out');

  if (problems.length) throw new Error(`browser problems:\n${problems.join('\n')}`);
  step('all steps passed');
} catch (error) {
  failed = true;
  console.error(`FAILED: ${error.stack || error}`);
  for (const page of context.pages()) {
    try { await page.screenshot({ path: join(shots, `failure-${context.pages().indexOf(page)}.png`) }); } catch { /* closed */ }
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
