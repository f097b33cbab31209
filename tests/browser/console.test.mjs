// Browser tests of the web console, in headless Debian chromium (playwright-core never downloads
// a browser). They start `cashback serve --dev` on a fresh SQLite file, load a small programme
// through the public APIs, then drive the console as a citizen and as an operator. Screenshots of
// each screen go to docs/console/.
//
//   CASHBACK_BIN   the binary (default: target/debug/cashback)
//   CHROMIUM       the browser (default: /usr/bin/chromium)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.CASHBACK_BIN || join(root, 'target/debug/cashback');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = join(root, 'docs/console');
const DEV_SALT = 'cashback-dev-salt';
const ABI = '12345';
const STEP = 20_000; // ms: the longest any single wait may take
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

/** A valid Italian fiscal code: 15 characters and their check letter. */
function fiscalCode(body) {
  const odd = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
  let sum = 0;
  for (let i = 0; i < 15; i++) {
    const c = body[i];
    const v = c >= '0' && c <= '9' ? c.charCodeAt(0) - 48 : c.charCodeAt(0) - 65;
    sum += i % 2 === 0 ? odd[v] : v; // digits 0–9 weigh as letters A–J
  }
  return body + String.fromCharCode(65 + (sum % 26));
}
const citizenCf = (n) => fiscalCode('RSSMRA85T10H' + String(500 + n).padStart(3, '0'));

const iso = (d) => d.toISOString().slice(0, 10);
const ymd = (d) => iso(d).replaceAll('-', '');
const rfc3339 = (d) => d.toISOString().replace('Z', '+00:00'); // milliseconds kept: activation is to the ms

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

const ctx = {};

function admin(...args) {
  return execFileSync(BIN, ['admin', '--database', ctx.db, ...args], { cwd: ctx.dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
}

async function http(method, path, { token, key, json, body, ok = [200, 201, 204] } = {}) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (key) headers['Ocp-Apim-Subscription-Key'] = key;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const r = await fetch(ctx.base + path, { method, headers, body });
  const text = await r.text();
  assert.ok(ok.includes(r.status), `${method} ${path}: ${r.status} ${text}`);
  try { return JSON.parse(text); } catch (_) { return text; }
}

async function login(cf) {
  return (await http('POST', '/bpd/pagopa/api/v1/login?fiscalCode=' + cf)).trim();
}

/** One acquirer row (E1, 15 columns). */
const row = (id, hpan, at, cents, merchant = 'M1') =>
  `${ABI};00;01;${hpan};${rfc3339(at)};${id};ISS${id};;${cents};978;ACQ1;${merchant};T${id};40236010;5411`;

let fileSeq = 0;
/** Upload a plain CSV through the acquirer API (SAS, then PUT) and wait for its report. */
async function uploadFile(lines) {
  fileSeq += 1;
  const now = new Date();
  const name = `CSTAR.${ABI}.TRNLOG.${ymd(now)}.${now.toISOString().slice(11, 19).replaceAll(':', '')}.${String(fileSeq).padStart(3, '0')}.csv`;
  const sas = await http('POST', '/rtd/csv-transaction/rtd/sas', { key: ctx.acquirerKey });
  await http('PUT', `/pagopastorage/${sas.authorizedContainer}/${name}?${sas.sas}`, { key: ctx.acquirerKey, body: lines.join('\n') + '\n' });
  return name;
}

async function until(what, f) {
  const deadline = Date.now() + STEP;
  for (;;) {
    const v = await f();
    if (v) return v;
    assert.ok(Date.now() < deadline, 'timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'cashback-console-'));
  ctx.db = 'sqlite://' + join(ctx.dir, 'cashback.db');
  mkdirSync(SHOTS, { recursive: true });
  const today = new Date();
  const start = new Date(today.getTime() - 20 * 86400e3);
  const end = new Date(today.getTime() + 40 * 86400e3);
  admin('period-set', '--id', '7', '--start', iso(start), '--end', iso(end), '--min-transactions', '3', '--super-cashback-positions', '5');
  ctx.operatorKey = JSON.parse(admin('credential-create', '--kind', 'operator', '--scope', 'console')).apiKey;
  ctx.acquirerKey = JSON.parse(admin('credential-create', '--kind', 'acquirer', '--scope', ABI)).apiKey;
  assert.ok(ctx.operatorKey && ctx.acquirerKey, 'credential keys printed');

  const port = await freePort();
  ctx.base = `http://127.0.0.1:${port}`;
  // Every acquirer file is classified against fresh enrolments (the default reuses a snapshot for
  // 60 s, and the test switches a card on just before sending its payments).
  const config = join(ctx.dir, 'cashback.toml');
  writeFileSync(config, '[acquirer]\nsnapshot_max_age_secs = 0\n');
  ctx.server = spawn(BIN, ['serve', '--dev', '--listen', `127.0.0.1:${port}`, '--database', ctx.db, '--config', config],
    { cwd: ctx.dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  ctx.log = '';
  ctx.server.stderr.on('data', (d) => { ctx.log = (ctx.log + d).slice(-20000); });
  await until('the server to be healthy', async () => {
    try { return (await fetch(ctx.base + '/health')).ok; } catch (_) { return false; }
  });

  // The citizen under test: enrolled, two cards, the first one switched off.
  ctx.cf = citizenCf(0);
  ctx.token = await login(ctx.cf);
  await http('PUT', '/bpd/io/citizen/v2', { token: ctx.token, json: {} });
  ctx.card = sha256('4111111111111111' + DEV_SALT);
  ctx.card2 = sha256('5500000000000004' + DEV_SALT);
  await http('PUT', '/bpd/io/payment-instruments/' + ctx.card, { token: ctx.token });
  await http('PUT', '/bpd/io/payment-instruments/' + ctx.card2, { token: ctx.token });
  await http('DELETE', '/bpd/io/payment-instruments/' + ctx.card, { token: ctx.token });

  // Other citizens, so the ranking has a distribution; their cards pay 1–9 times.
  const cards = [];
  for (let n = 1; n <= 24; n++) {
    const token = await login(citizenCf(n));
    await http('PUT', '/bpd/io/citizen/v2', { token, json: {} });
    cards.push(sha256('card-' + n + DEV_SALT));
    await http('PUT', '/bpd/io/payment-instruments/' + cards[n - 1], { token });
  }
  // Payments count from the card's activation instant on: dated after the enrolments.
  await new Promise((r) => setTimeout(r, 20));
  const at = new Date();
  const lines = [];
  cards.forEach((card, i) => {
    const n = i + 1;
    for (let k = 0; k < 1 + (n % 9); k++) lines.push(row(`P${n}X${k}`, card, at, 1500 + 250 * k, 'M' + k));
  });
  lines.push(`${ABI};00;01;${ctx.card2};2026-02-30T10:00:00+01:00;BAD1;ISSBAD1;;1000;978;ACQ1;M1;T1;40236010;5411`);
  lines.push(`${ABI};00;01;nothex;${rfc3339(at)};BAD2;ISSBAD2;;1000;978;ACQ1;M1;T1;40236010;5411`);
  ctx.firstFile = await uploadFile(lines);
  await until('the first file to be ingested', async () => {
    const f = await http('GET', '/bpd/ops/files/' + ctx.firstFile, { key: ctx.operatorKey, ok: [200, 404] });
    return f && f.status && f.status !== 'RECEIVED' && f.status !== 'IN_PROGRESS' ? f : null;
  });
  ctx.browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (ctx.browser) await ctx.browser.close();
  if (ctx.server) ctx.server.kill('SIGTERM');
  if (process.exitCode && ctx.log) console.error('--- server log (tail) ---\n' + ctx.log);
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

async function newPage(lang = 'en') {
  const context = await ctx.browser.newContext({ viewport: { width: 1280, height: 900 }, locale: lang === 'it' ? 'it-IT' : 'en-GB' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // 4xx answers the console handles (not enrolled, a wrong key) are logged by the browser as
  // "Failed to load resource"; anything else on the console is a script error.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text()); });
  await page.addInitScript((l) => localStorage.setItem('cashback.lang', l), lang);
  return { page, errors };
}

/** Every form control has an accessible name. */
async function unlabelled(page) {
  return page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map((e) => e.outerHTML));
}

test('a citizen logs in, switches a card on and sees its transaction after an ingestion', async () => {
  const { page, errors } = await newPage('en');
  const root = await page.goto(ctx.base + '/');
  assert.equal(root.status(), 200);
  assert.match(page.url(), /\/console\/$/, 'the root leads to the console');
  await page.screenshot({ path: join(SHOTS, 'login.png'), fullPage: true });

  await page.getByLabel('Fiscal code').fill(ctx.cf);
  await page.locator('#citizen-login button[type=submit]').click();
  await page.waitForURL(/#\/citizen$/);
  const sw = page.locator(`input[data-hpan="${ctx.card}"]`);
  await sw.waitFor();
  assert.equal(await sw.isChecked(), false, 'the card starts switched off');
  assert.equal(await page.locator(`input[data-hpan="${ctx.card2}"]`).isChecked(), true);
  assert.deepEqual(await unlabelled(page), []);

  await sw.check();
  await page.locator('#status').filter({ hasText: 'cashback on' }).waitFor();
  const inst = await http('GET', '/bpd/io/payment-instruments/' + ctx.card, { token: ctx.token });
  assert.equal(inst.status, 'ACTIVE', 'the switch enrolled the card');

  // An acquirer file brings three payments on the card (the period minimum is 3).
  const at = new Date();
  await uploadFile([row('C1', ctx.card, at, 4200), row('C2', ctx.card, at, 2000, 'M2'), row('C3', ctx.card, at, 99900, 'M3')]);
  await until('the citizen\'s cashback', async () => (await http('GET', '/bpd/io/winning-transactions/total-cashback?awardPeriodId=7', { token: ctx.token })).transactionNumber === 3);

  await page.reload();
  const trx = page.locator('tr[data-idtrx]');
  await trx.first().waitFor();
  assert.equal(await trx.count(), 3);
  const text = await page.locator('#transactions').innerText();
  assert.match(text, /42\.00/, 'the €42 payment is listed');
  assert.match(text, /Minimum count reached here/, 'the milestone is marked');
  assert.match(await page.locator('#card-cashback').innerText(), /€21\.20/, '10% of 42 + 20 + 150 (capped per transaction)');
  assert.match(await page.locator('#card-count').innerText(), /Minimum reached/);
  assert.match(await page.locator('#card-rank').innerText(), /Position \d+ of 25/);
  await page.screenshot({ path: join(SHOTS, 'citizen.png'), fullPage: true });

  // The same screen in Italian.
  await page.selectOption('#lang-select', 'it');
  await page.getByRole('heading', { name: 'Strumenti di pagamento' }).waitFor();
  assert.deepEqual(errors, [], 'no script errors');
});

test('an operator sees the file report and the ranking chart', async () => {
  const { page, errors } = await newPage('en');
  await page.goto(ctx.base + '/console/');
  await page.getByLabel('Operator API key').fill('not-a-key');
  await page.locator('#operator-login button[type=submit]').click();
  await page.locator('#status').filter({ hasText: /not an operator key|unknown/ }).waitFor();

  await page.getByLabel('Operator API key').fill(ctx.operatorKey);
  await page.locator('#operator-login button[type=submit]').click();
  await page.waitForURL(/#\/ops$/);
  await page.locator('#files').waitFor();
  assert.match(await page.locator('#totals').innerText(), /25/, '25 citizens');

  // The file report: the two malformed rows, by line, field and reason.
  await page.getByRole('button', { name: 'Report of ' + ctx.firstFile }).click();
  const report = page.locator('#file-report');
  await report.locator('tbody tr').first().waitFor();
  const rows = await report.locator('tbody tr').allInnerTexts();
  assert.equal(rows.length, 2, rows.join('\n'));
  assert.ok(rows.every((r) => /^\d+\t/.test(r)), 'each rejection names its line');
  assert.ok(rows.some((r) => /hpan/i.test(r)), 'the bad hpan is named: ' + rows.join(' | '));

  // The ranking: distribution and count at position N, drawn.
  for (const id of ['chart-distribution', 'chart-threshold', 'chart-enrollment', 'chart-rows']) {
    await page.locator(`#${id} canvas`).waitFor();
  }
  assert.equal(await page.locator('#rank-participants .tile-value').innerText(), '25');
  const buckets = await page.locator('#chart-distribution tbody tr').count();
  assert.ok(buckets >= 2, 'a distribution of counts');
  assert.deepEqual(await unlabelled(page), []);
  await page.screenshot({ path: join(SHOTS, 'operator.png'), fullPage: true });
  assert.deepEqual(errors, [], 'no script errors');
});
