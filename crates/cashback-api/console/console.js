// The cashback web console: the citizen's screens and the operators' dashboard, on the public
// APIs only (citizen: Bearer token; operator: Ocp-Apim-Subscription-Key). No framework, no build
// step; every element is built with `el()` (text is never parsed as HTML).
'use strict';
(() => {
  const store = window.sessionStorage;
  const KEY_TOKEN = 'cashback.citizenToken';
  const KEY_CF = 'cashback.citizenCf';
  const KEY_OPERATOR = 'cashback.operatorKey';
  const KEY_LANG = 'cashback.lang';
  const COLORS = ['#0b5cad', '#b34700', '#2e7d32', '#a4262c'];

  let lang = localStorage.getItem(KEY_LANG) || ((navigator.language || 'en').startsWith('it') ? 'it' : 'en');
  const charts = [];

  // ---- helpers ------------------------------------------------------------------------------

  function t(key, vars) {
    const dict = window.I18N[lang] || window.I18N.en;
    let s = dict[key] ?? window.I18N.en[key] ?? key;
    for (const [k, v] of Object.entries(vars || {})) s = s.split('{' + k + '}').join(String(v));
    return s;
  }

  /** Build an element: `el('p', {class: 'x', onclick: f}, 'text', child, …)`. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'text') e.textContent = v;
      else if (v === true) e.setAttribute(k, '');
      else e.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const numberFmt = () => new Intl.NumberFormat(lang === 'it' ? 'it-IT' : 'en-GB');
  const euros = (v) => new Intl.NumberFormat(lang === 'it' ? 'it-IT' : 'en-GB', { style: 'currency', currency: 'EUR' }).format(v);
  const cents = (c) => euros(Number(c) / 100);
  const num = (n) => numberFmt().format(n);
  function day(iso) {
    if (!iso) return '';
    const d = new Date(iso.length === 10 ? iso + 'T12:00:00Z' : iso);
    return new Intl.DateTimeFormat(lang === 'it' ? 'it-IT' : 'en-GB', { dateStyle: 'medium', timeZone: 'Europe/Rome' }).format(d);
  }
  function clock(iso) {
    return new Intl.DateTimeFormat(lang === 'it' ? 'it-IT' : 'en-GB', { timeStyle: 'short', timeZone: 'Europe/Rome' }).format(new Date(iso));
  }
  const shortCard = (hpan) => '…' + hpan.slice(0, 8);

  function announce(msg, kind) {
    const s = document.getElementById('status');
    s.className = 'status ' + (kind || 'info');
    s.textContent = msg;
  }

  class ApiError extends Error {
    constructor(status, detail, field, retryAfter) {
      super(detail || 'HTTP ' + status);
      this.status = status;
      this.field = field;
      this.retryAfter = retryAfter;
    }
  }

  /** Call the API with the credential of `who` ('citizen' | 'operator' | null). */
  async function api(who, path, opts) {
    const o = opts || {};
    const headers = { Accept: 'application/json' };
    if (who === 'citizen') headers.Authorization = 'Bearer ' + store.getItem(KEY_TOKEN);
    if (who === 'operator') headers['Ocp-Apim-Subscription-Key'] = store.getItem(KEY_OPERATOR);
    let body;
    if (o.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(o.json);
    }
    const r = await fetch(path, { method: o.method || 'GET', headers, body });
    const text = await r.text();
    if (!r.ok) {
      let p = {};
      try { p = JSON.parse(text); } catch (_) { /* not problem+json */ }
      throw new ApiError(r.status, p.detail || text || r.statusText, p.field, r.headers.get('Retry-After'));
    }
    if (!text) return null;
    return (r.headers.get('Content-Type') || '').includes('json') ? JSON.parse(text) : text;
  }

  function showError(e) {
    if (e instanceof ApiError && (e.status === 429 || e.status === 503) && e.retryAfter) {
      announce(t('retryLater', { s: e.retryAfter }), 'error');
    } else {
      announce(t('error') + ': ' + e.message, 'error');
    }
  }

  function section(id, title, ...children) {
    return el('section', { id, 'aria-labelledby': id + '-h', class: 'panel' }, el('h2', { id: id + '-h' }, title), ...children);
  }

  function table(headers, rows, caption) {
    return el('table', {},
      caption ? el('caption', { class: 'sr-only' }, caption) : null,
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows));
  }

  function field(id, label, input) {
    input.id = id;
    return el('div', { class: 'field' }, el('label', { for: id }, label), input);
  }

  function progress(label, value, max, text) {
    return el('div', { class: 'meter' },
      el('progress', { max: String(Math.max(max, 1)), value: String(Math.min(value, max)), 'aria-label': label }),
      el('p', { class: 'meter-text' }, text));
  }

  // ---- charts (uPlot) -----------------------------------------------------------------------

  function destroyCharts() {
    while (charts.length) charts.pop().destroy();
  }

  /**
   * A chart in a <figure>: uPlot draws it (hidden from screen readers), a data table under a
   * <details> says the same in text. x is days (epoch seconds) unless `labels[i]` names x[i].
   */
  function chart(id, title, x, series, opts) {
    const o = opts || {};
    const holder = el('div', { class: 'chart', id: id + '-plot', 'aria-hidden': 'true' });
    const rowLabels = o.labels || x.map((v) => day(new Date(v * 1000).toISOString().slice(0, 10)));
    const rows = x.map((_, i) => el('tr', {}, el('th', { scope: 'row' }, rowLabels[i]), series.map((s) => el('td', {}, num(s.values[i] ?? 0)))));
    const fig = el('figure', { id, class: 'figure', 'data-points': String(x.length) },
      el('figcaption', {}, title),
      holder,
      el('details', {}, el('summary', {}, t('showData')), table([o.xLabel || t('date'), ...series.map((s) => s.label)], rows, title)));
    requestAnimationFrame(() => {
      if (!window.uPlot) return;
      const width = Math.max(280, (holder.clientWidth || 600) - 16);
      const bars = o.bars ? window.uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
      const u = new window.uPlot({
        width,
        height: 220,
        // Days: half a day of margin, so edge bars show whole; a single point gets a week.
        scales: { x: o.labels ? { time: false } : { time: true, range: dayRange(x) } },
        axes: [
          o.labels ? { values: (_, ticks) => ticks.map((v) => o.labels[v] ?? '') } : {},
          { values: (_, ticks) => ticks.map((v) => num(v)) },
        ],
        series: [{ label: o.xLabel || t('date'), value: o.labels ? (_, v) => o.labels[v] ?? '' : undefined },
          ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2,
            fill: o.bars ? COLORS[i % COLORS.length] + '99' : undefined, paths: bars, points: { show: !o.bars } }))],
      }, [x, ...series.map((s) => s.values)], holder);
      charts.push(u);
    });
    return fig;
  }

  const epoch = (isoDate) => Date.parse(isoDate + 'T00:00:00Z') / 1000;

  /** A fixed x range for days (epoch seconds): half a day of margin, a week for a single day. */
  function dayRange(x) {
    if (!x.length) return undefined;
    const lo = Math.min(...x);
    const hi = Math.max(...x);
    return lo === hi ? [lo - 7 * 86400, hi + 86400] : [lo - 43200, hi + 43200];
  }

  // ---- navigation ---------------------------------------------------------------------------

  function renderNav() {
    const nav = document.getElementById('nav');
    nav.replaceChildren();
    const here = location.hash || '#/login';
    const links = [['#/login', t('navLogin')]];
    if (store.getItem(KEY_TOKEN)) links.push(['#/citizen', t('navCitizen')]);
    if (store.getItem(KEY_OPERATOR)) links.push(['#/ops', t('navOps')]);
    for (const [href, label] of links) {
      nav.append(el('li', {}, el('a', { href, 'aria-current': here === href ? 'page' : null }, label)));
    }
  }

  function applyStaticStrings() {
    document.documentElement.lang = lang;
    document.title = t('appTitle') + ' — console';
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-aria]')) e.setAttribute('aria-label', t(e.dataset.i18nAria));
    document.getElementById('lang-select').value = lang;
  }

  async function route() {
    destroyCharts();
    applyStaticStrings();
    renderNav();
    const main = document.getElementById('main');
    main.replaceChildren(el('p', { class: 'muted' }, t('loading')));
    const hash = location.hash || '#/login';
    try {
      if (hash === '#/citizen' && store.getItem(KEY_TOKEN)) await citizenView(main);
      else if (hash === '#/ops' && store.getItem(KEY_OPERATOR)) await opsView(main);
      else loginView(main);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        store.removeItem(hash === '#/ops' ? KEY_OPERATOR : KEY_TOKEN);
        location.hash = '#/login';
      }
      showError(e);
    }
  }

  function signOutButton(key) {
    return el('button', { type: 'button', class: 'secondary', onclick: () => {
      store.removeItem(key);
      if (key === KEY_TOKEN) store.removeItem(KEY_CF);
      location.hash = '#/login';
    } }, t('signOut'));
  }

  // ---- login --------------------------------------------------------------------------------

  function loginView(main) {
    const cf = el('input', { type: 'text', autocomplete: 'off', required: true, maxlength: '16', spellcheck: 'false', class: 'upper' });
    const tok = el('input', { type: 'password', autocomplete: 'off', required: true });
    const key = el('input', { type: 'password', autocomplete: 'off', required: true });
    const devForm = el('form', { id: 'citizen-login', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const fiscal = cf.value.trim().toUpperCase();
        const token = await api(null, '/bpd/pagopa/api/v1/login?fiscalCode=' + encodeURIComponent(fiscal), { method: 'POST' });
        store.setItem(KEY_TOKEN, String(token).trim());
        store.setItem(KEY_CF, fiscal);
        location.hash = '#/citizen';
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) announce(t('devLoginUnavailable'), 'error');
        else showError(e);
      }
    } }, field('login-cf', t('fiscalCode'), cf), el('button', { type: 'submit' }, t('devLogin')));
    const tokenForm = el('form', { id: 'token-login', onsubmit: (ev) => {
      ev.preventDefault();
      store.setItem(KEY_TOKEN, tok.value.trim());
      store.removeItem(KEY_CF);
      location.hash = '#/citizen';
    } }, field('login-token', t('token'), tok), el('button', { type: 'submit', class: 'secondary' }, t('useToken')));
    const opForm = el('form', { id: 'operator-login', onsubmit: async (ev) => {
      ev.preventDefault();
      store.setItem(KEY_OPERATOR, key.value.trim());
      try {
        await api('operator', '/bpd/ops/award-periods');
        location.hash = '#/ops';
      } catch (e) {
        store.removeItem(KEY_OPERATOR);
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) announce(t('badKey'), 'error');
        else showError(e);
      }
    } }, field('login-key', t('apiKey'), key), el('button', { type: 'submit' }, t('openDashboard')));
    main.replaceChildren(
      el('h2', { class: 'page-title' }, t('loginTitle')),
      el('div', { class: 'grid two' },
        section('login-citizen', t('citizenLogin'), el('p', { class: 'muted' }, t('citizenLoginHelp')), devForm, tokenForm),
        section('login-operator', t('operatorLogin'), el('p', { class: 'muted' }, t('operatorLoginHelp')), opForm)));
  }

  // ---- citizen ------------------------------------------------------------------------------

  function pickPeriod(periods) {
    const raw = store.getItem('cashback.period');
    const saved = raw === null ? NaN : Number(raw);
    if (periods.some((p) => p.awardPeriodId === saved)) return saved;
    const active = periods.find((p) => p.status === 'ACTIVE') || periods.find((p) => p.status === 'WAITING');
    return (active || periods[periods.length - 1] || {}).awardPeriodId;
  }

  async function citizenView(main) {
    const cf = store.getItem(KEY_CF) || '';
    const head = el('div', { class: 'page-head' },
      el('h2', { class: 'page-title' }, t('navCitizen')),
      el('span', { class: 'muted' }, cf ? t('signedInAs', { cf }) : ''),
      signOutButton(KEY_TOKEN));
    let citizen;
    try {
      citizen = await api('citizen', '/bpd/io/citizen/v2');
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    if (!citizen || !citizen.enabled) {
      main.replaceChildren(head, section('join', t('notEnrolled'),
        el('button', { type: 'button', id: 'join-button', onclick: async () => {
          try {
            await api('citizen', '/bpd/io/citizen/v2', { method: 'PUT', json: {} });
            announce(t('joined'), 'ok');
            route();
          } catch (e) { showError(e); }
        } }, t('join'))));
      return;
    }
    const periods = await api('citizen', '/bpd/io/award-periods/v2');
    const periodId = pickPeriod(periods);
    const period = periods.find((p) => p.awardPeriodId === periodId);
    const select = el('select', { onchange: () => { store.setItem('cashback.period', select.value); route(); } },
      periods.map((p) => el('option', { value: String(p.awardPeriodId), selected: p.awardPeriodId === periodId },
        t('periodOption', { start: day(p.startDate), end: day(p.endDate), status: t('status_' + p.status) }))));
    const parts = [head, el('div', { class: 'toolbar' }, field('period-select', t('period'), select))];
    let milestones = {};
    if (period) {
      const summary = await summaryPanel(period);
      parts.push(summary.panel);
      milestones = summary.milestones;
    }
    parts.push(el('div', { class: 'grid two' }, await instrumentsPanel(), ibanPanel(citizen, cf)));
    if (period) parts.push(await transactionsPanel(period, milestones));
    parts.push(el('div', { class: 'grid two' }, await awardsPanel(), await complaintsPanel(periods, periodId)));
    main.replaceChildren(...parts);
  }

  async function summaryPanel(p) {
    const id = p.awardPeriodId;
    const total = await api('citizen', '/bpd/io/winning-transactions/total-cashback?awardPeriodId=' + id);
    let rank = null;
    let rankMsg = null;
    try {
      const r = await api('citizen', '/bpd/io/citizen/v2/ranking/milestone?awardPeriodId=' + id);
      rank = (r || []).find((x) => x.awardPeriodId === id) || null;
      if (!rank) rankMsg = t('notRanked');
    } catch (e) {
      if (e instanceof ApiError && e.status === 503) rankMsg = t('rankingLoading');
      else if (e instanceof ApiError && e.status === 404) rankMsg = t('notRanked');
      else throw e;
    }
    const cap = Number(p.maxPeriodCashback);
    const got = Number(total.totalCashback);
    const count = total.transactionNumber;
    const cashback = el('div', { class: 'card', id: 'card-cashback' },
      el('h3', {}, t('cashback')),
      el('p', { class: 'big' }, euros(got)),
      progress(t('cashbackProgress'), got, cap, t('cashbackOf', { amount: euros(got), cap: euros(cap) })),
      got >= cap ? el('p', { class: 'note' }, t('capReachedNote')) : null);
    const min = p.minTransactionNumber;
    const counted = el('div', { class: 'card', id: 'card-count' },
      el('h3', {}, t('transactions')),
      el('p', { class: 'big' }, num(count)),
      progress(t('countProgress'), count, min, t('countOf', { n: num(count), min: num(min) })),
      el('p', { class: 'note' }, count >= min ? t('qualified') : t('toQualify', { n: num(min - count) })));
    const superCb = el('div', { class: 'card', id: 'card-rank' }, el('h3', {}, t('superCashback')));
    if (!p.minPosition) {
      superCb.append(el('p', { class: 'muted' }, t('noSuperCashback')));
    } else if (rank && rank.totalParticipants > 0 && rank.ranking > 0) {
      superCb.append(el('p', { class: 'big' }, t('rankOf', { rank: num(rank.ranking), total: num(rank.totalParticipants) })));
      if (rank.ranking <= p.minPosition && rank.transactionNumber >= min) {
        superCb.append(el('p', { class: 'note ok' }, t('inTop', { n: num(p.minPosition), prize: euros(Number(p.maxAmount)) })));
      } else {
        const needed = Math.max(rank.minTransactionNumber - rank.transactionNumber, min - rank.transactionNumber, 0);
        superCb.append(el('p', { class: 'note' }, t('toTop', { n: num(p.minPosition), count: num(rank.minTransactionNumber), needed: num(needed) })));
      }
    } else {
      superCb.append(el('p', { class: 'muted' }, rankMsg || t('notRanked')));
    }
    const panel = el('div', { class: 'grid three', id: 'summary' }, cashback, counted, superCb);
    return { panel, milestones: (rank && rank.milestoneResource) || {} };
  }

  async function instrumentsPanel() {
    const list = await api('citizen', '/bpd/io/payment-instruments');
    if (!list.length) return section('instruments', t('instruments'), el('p', { class: 'muted' }, t('noInstruments')));
    const rows = list.map((i) => {
      const on = i.status === 'ACTIVE';
      const sw = el('input', { type: 'checkbox', role: 'switch', checked: on, 'aria-checked': String(on), 'aria-label': t('cashbackOn', { card: shortCard(i.hpan) }), 'data-hpan': i.hpan,
        onchange: async () => {
          sw.disabled = true;
          try {
            await api('citizen', '/bpd/io/payment-instruments/' + encodeURIComponent(i.hpan), { method: sw.checked ? 'PUT' : 'DELETE' });
            announce(t(sw.checked ? 'instrumentOn' : 'instrumentOff', { card: shortCard(i.hpan) }), 'ok');
            sw.setAttribute('aria-checked', String(sw.checked));
          } catch (e) {
            sw.checked = !sw.checked;
            showError(e);
          } finally {
            sw.disabled = false;
          }
        } });
      return el('tr', {},
        el('td', { class: 'mono', title: i.hpan }, shortCard(i.hpan)),
        el('td', {}, i.channel),
        el('td', {}, i.activationDate ? day(i.activationDate) : ''),
        el('td', {}, el('label', { class: 'switch' }, sw, el('span', { class: 'slider', 'aria-hidden': 'true' }))));
    });
    return section('instruments', t('instruments'), table([t('card'), t('channel'), t('activeSince'), t('cashback')], rows, t('instruments')));
  }

  function ibanPanel(citizen, cf) {
    const iban = el('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', class: 'upper', maxlength: '34' });
    const name = el('input', { type: 'text', required: true, autocomplete: 'given-name' });
    const surname = el('input', { type: 'text', required: true, autocomplete: 'family-name' });
    const holder = el('input', { type: 'text', required: true, class: 'upper', maxlength: '16', value: cf || '' });
    const form = el('form', { id: 'iban-form', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const r = await api('citizen', '/bpd/io/citizen', { method: 'PATCH', json: {
          payoffInstr: iban.value.replace(/\s+/g, '').toUpperCase(), payoffInstrType: 'IBAN',
          accountHolderCF: holder.value.trim().toUpperCase(), accountHolderName: name.value.trim(), accountHolderSurname: surname.value.trim() } });
        announce(t('ibanSaved', { status: r.validationStatus }), 'ok');
        route();
      } catch (e) { showError(e); }
    } },
    field('iban-input', 'IBAN', iban), field('iban-name', t('holderName'), name), field('iban-surname', t('holderSurname'), surname),
    field('iban-cf', t('holderCf'), holder), el('button', { type: 'submit' }, t('saveIban')));
    return section('iban', t('iban'),
      el('p', { id: 'current-iban' }, citizen.payoffInstr ? t('currentIban', { iban: citizen.payoffInstr }) : t('noIban')), form);
  }

  /** The period's transactions by day; `m` marks the payments where the milestones fell. */
  async function transactionsPanel(p, m) {
    const list = el('div', { id: 'trx-days' });
    const panel = section('transactions', t('trxByDay'), list);
    const more = el('button', { type: 'button', class: 'secondary', hidden: true }, t('loadMore'));
    panel.append(more);
    let cursor = 0;
    const load = async () => {
      const page = await api('citizen', '/bpd/io/winning-transactions/v2?awardPeriodId=' + p.awardPeriodId + '&limit=50&nextCursor=' + cursor);
      for (const d of page.transactions) {
        const rows = d.transactions.map((x) => {
          const amount = Number(x.amount);
          const badges = [];
          if (m.idTrxMinTransactionNumber && x.idTrx === m.idTrxMinTransactionNumber) badges.push(el('span', { class: 'badge min' }, t('milestoneMin')));
          if (m.idTrxPivot && x.idTrx === m.idTrxPivot) badges.push(el('span', { class: 'badge cap' }, t('milestoneCap')));
          return el('tr', { class: amount < 0 ? 'reversal' : null, 'data-idtrx': x.idTrx },
            el('td', {}, clock(x.trxDate)),
            el('td', { class: 'num' }, euros(amount), amount < 0 ? el('span', { class: 'muted' }, ' (' + t('reversal') + ')') : null),
            el('td', { class: 'num' }, euros(Number(x.cashback))),
            el('td', { class: 'mono' }, shortCard(x.hashPan)),
            el('td', {}, badges));
        });
        list.append(el('h3', { class: 'day' }, day(d.date) + ' · ' + num(d.transactions.length)),
          table([t('time'), t('amount'), t('cashback'), t('card'), ''], rows, day(d.date)));
      }
      if (!list.childElementCount) list.append(el('p', { class: 'muted' }, t('noTransactions')));
      more.hidden = page.nextCursor === undefined || page.nextCursor === null;
      cursor = page.nextCursor;
    };
    more.addEventListener('click', () => load().catch(showError));
    await load();
    return panel;
  }

  async function awardsPanel() {
    const awards = await api('citizen', '/bpd/io/awards');
    if (!awards.length) return section('awards', t('awards'), el('p', { class: 'muted' }, t('noAwards')));
    const rows = awards.map((a) => el('tr', {},
      el('td', {}, String(a.awardPeriodId)), el('td', {}, a.kind), el('td', { class: 'num' }, cents(a.amountCents)),
      el('td', {}, a.status), el('td', { class: 'mono' }, a.ibanMasked || '')));
    return section('awards', t('awards'), table([t('period'), t('kind'), t('amount'), t('status'), 'IBAN'], rows, t('awards')));
  }

  async function complaintsPanel(periods, periodId) {
    const list = await api('citizen', '/bpd/io/complaints');
    const kinds = ['MISSING_TRANSACTION', 'WRONG_AMOUNT', 'PAYMENT_NOT_RECEIVED'];
    const periodSel = el('select', {}, periods.map((p) => el('option', { value: String(p.awardPeriodId), selected: p.awardPeriodId === periodId }, day(p.startDate) + ' – ' + day(p.endDate))));
    const kindSel = el('select', {}, kinds.map((k) => el('option', { value: k }, t('kind_' + k))));
    const desc = el('textarea', { rows: '3', required: true, maxlength: '2000' });
    const form = el('form', { id: 'complaint-form', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api('citizen', '/bpd/io/complaints', { method: 'POST', json: { awardPeriodId: Number(periodSel.value), kind: kindSel.value, description: desc.value } });
        announce(t('complaintSent'), 'ok');
        route();
      } catch (e) { showError(e); }
    } }, el('h3', {}, t('newComplaint')), field('complaint-period', t('period'), periodSel), field('complaint-kind', t('kind'), kindSel),
    field('complaint-desc', t('description'), desc), el('button', { type: 'submit' }, t('send')));
    const body = list.length
      ? table([t('created'), t('kind'), t('status'), t('decision')], list.map((c) => el('tr', {},
        el('td', {}, day(c.createdAt)), el('td', {}, t('kind_' + c.kind)), el('td', {}, c.status),
        el('td', {}, c.operatorNote || (c.correctionCents != null ? cents(c.correctionCents) : ''))), t('complaints')))
      : el('p', { class: 'muted' }, t('noComplaints'));
    return section('complaints', t('complaints'), body, form);
  }

  // ---- operator -----------------------------------------------------------------------------

  async function opsView(main) {
    const periods = await api('operator', '/bpd/ops/award-periods');
    const periodId = pickPeriod(periods);
    const period = periods.find((p) => p.awardPeriodId === periodId);
    const select = el('select', { onchange: () => { store.setItem('cashback.period', select.value); route(); } },
      periods.map((p) => el('option', { value: String(p.awardPeriodId), selected: p.awardPeriodId === periodId },
        t('periodOption', { start: day(p.startDate), end: day(p.endDate), status: t('status_' + p.status) }))));
    const head = el('div', { class: 'page-head' },
      el('h2', { class: 'page-title' }, t('opsTitle')),
      el('span', { class: 'muted', id: 'updated' }, t('lastUpdate', { time: clock(new Date().toISOString()) })),
      el('button', { type: 'button', class: 'secondary', onclick: () => route() }, t('refresh')),
      signOutButton(KEY_OPERATOR));
    const stats = await api('operator', '/bpd/ops/stats');
    const parts = [head, totalsPanel(stats.totals), el('div', { class: 'grid two' }, ...statsCharts(stats.days)),
      el('div', { class: 'toolbar' }, field('ops-period', t('period'), select))];
    if (period) parts.push(await rankingPanel(period));
    parts.push(await filesPanel());
    if (period) parts.push(await payoutsPanel(period));
    parts.push(await queuePanel());
    main.replaceChildren(...parts);
  }

  function totalsPanel(tot) {
    const tiles = [['totCitizens', tot.citizens], ['totEnabled', tot.citizensEnabled], ['totInstrumentsActive', tot.instrumentsActive],
      ['totInstruments', tot.instruments], ['totFiles', tot.files], ['totTransactions', tot.transactions]];
    return el('div', { class: 'tiles', id: 'totals' }, tiles.map(([k, v]) => el('div', { class: 'tile' },
      el('span', { class: 'tile-label' }, t(k)), el('span', { class: 'tile-value' }, num(v ?? 0)))));
  }

  function statsCharts(days) {
    const x = days.map((d) => epoch(d.date));
    return [
      el('div', { class: 'panel' }, chart('chart-enrollment', t('chartEnrollment'), x, [
        { label: t('seriesCitizens'), values: days.map((d) => d.citizensEnrolled) },
        { label: t('seriesInstruments'), values: days.map((d) => d.instrumentsActivated) }])),
      el('div', { class: 'panel' }, chart('chart-rows', t('chartRows'), x, [
        { label: t('seriesAccepted'), values: days.map((d) => d.rowsAccepted) },
        { label: t('seriesRejected'), values: days.map((d) => d.rowsRejected) }], { bars: true })),
    ];
  }

  async function rankingPanel(p) {
    const id = p.awardPeriodId;
    let view;
    try {
      view = await api('operator', '/bpd/ops/award-periods/' + id + '/ranking?top=0');
    } catch (e) {
      if (e instanceof ApiError && e.status === 503) return section('ranking', t('ranking'), el('p', { class: 'muted' }, t('rankingLoading')));
      throw e;
    }
    const history = await api('operator', '/bpd/ops/award-periods/' + id + '/ranking/history');
    const n = view.minPosition;
    const tiles = el('div', { class: 'tiles' },
      [['participants', view.participants], ['countAtN', view.countAtN], ['topCount', view.topCount], ['awardedNow', view.awarded]].map(([k, v]) =>
        el('div', { class: 'tile', id: 'rank-' + k }, el('span', { class: 'tile-label' }, t(k, { n: num(n) })), el('span', { class: 'tile-value' }, num(v)))));
    const buckets = view.distribution;
    const bx = buckets.map((_, i) => i);
    const bl = buckets.map((b) => (b.to === undefined || b.to === null ? b.from + '+' : b.from === b.to ? String(b.from) : b.from + '–' + b.to));
    const dist = chart('chart-distribution', t('chartDistribution'), bx, [
      { label: t('seriesCitizensCount'), values: buckets.map((b) => b.citizens) }], { bars: true, labels: bl, xLabel: t('bucket') });
    // The history is one snapshot a day; today's live value is added (or replaces today's).
    const today = new Date().toISOString().slice(0, 10);
    const points = history.filter((h) => h.date !== today).map((h) => [epoch(h.date), h.countAtN]);
    points.push([epoch(today), view.countAtN]);
    const thr = chart('chart-threshold', t('chartThreshold', { n: num(n) }), points.map((q) => q[0]), [
      { label: t('seriesThreshold', { n: num(n) }), values: points.map((q) => q[1]) }]);
    return section('ranking', t('ranking'), tiles, el('div', { class: 'grid two' }, dist, thr));
  }

  async function filesPanel() {
    const files = await api('operator', '/bpd/ops/files?limit=50');
    const report = el('div', { id: 'file-report', 'aria-live': 'polite' });
    if (!files.length) return section('files', t('files'), el('p', { class: 'muted' }, t('noFiles')));
    const rows = files.map((f) => {
      const c = f.counts || {};
      return el('tr', {},
        el('td', { class: 'mono' }, f.name), el('td', {}, f.abi), el('td', {}, f.status),
        el('td', {}, f.receivedAt ? day(f.receivedAt) + ' ' + clock(f.receivedAt) : ''),
        el('td', { class: 'num' }, num(c.accepted ?? 0)), el('td', { class: 'num' }, num(c.ineligible ?? 0)),
        el('td', { class: 'num' }, num(c.duplicates ?? 0)), el('td', { class: 'num' }, num(c.rejected ?? 0)),
        el('td', {}, el('button', { type: 'button', class: 'link', 'aria-label': t('viewReport', { name: f.name }), onclick: () => showReport(f.name, report) }, t('report'))));
    });
    return section('files', t('files'),
      el('div', { class: 'scroll' }, table([t('name'), t('abi'), t('status'), t('received'), t('accepted'), t('ineligible'), t('duplicates'), t('rejected'), ''], rows, t('files'))),
      report);
  }

  async function showReport(name, holder) {
    try {
      const r = await api('operator', '/bpd/ops/files/' + encodeURIComponent(name));
      const rej = r.rejections || r.rejectedRows || [];
      holder.replaceChildren(el('h3', { tabindex: '-1', id: 'file-report-title' }, t('viewReport', { name })),
        rej.length
          ? table([t('line'), t('field'), t('reason')], rej.map((x) => el('tr', {}, el('td', { class: 'num' }, String(x.line)), el('td', { class: 'mono' }, x.field), el('td', {}, x.reason))), t('viewReport', { name }))
          : el('p', { class: 'muted' }, t('noRejections')));
      document.getElementById('file-report-title').focus();
    } catch (e) { showError(e); }
  }

  async function payoutsPanel(p) {
    const parts = [];
    try {
      const s = await api('operator', '/bpd/ops/award-periods/' + p.awardPeriodId + '/close');
      parts.push(el('div', { class: 'tiles', id: 'close-summary' },
        [['closeCitizens', num(s.citizens)], ['closeAwards', num(s.awards)], ['closeNotEligible', num(s.notEligible)],
          ['closeWinners', num(s.superCashbackWinners)], ['closeAmount', cents(s.amountCents)], ['closeWithoutIban', num(s.withoutIban)]]
          .map(([k, v]) => el('div', { class: 'tile' }, el('span', { class: 'tile-label' }, t(k)), el('span', { class: 'tile-value' }, v)))));
      if (s.byStatus && s.byStatus.length) {
        parts.push(table([t('status'), t('closeAwards'), t('amount')], s.byStatus.map((b) => el('tr', {},
          el('td', {}, b.status), el('td', { class: 'num' }, num(b.awards)), el('td', { class: 'num' }, cents(b.amountCents)))), t('awardsPayouts')));
      }
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      parts.push(el('p', { class: 'muted' }, t('notClosed')));
    }
    const files = await api('operator', '/bpd/ops/payout-files?limit=50');
    parts.push(el('h3', {}, t('payoutFiles')));
    parts.push(files.length
      ? el('div', { class: 'scroll' }, table([t('name'), t('rows'), t('amount'), t('received')], files.map((f) => el('tr', {},
        el('td', { class: 'mono' }, f.name), el('td', { class: 'num' }, num(f.rows)), el('td', { class: 'num' }, cents(f.amountCents)),
        el('td', {}, day(f.createdAt)))), t('payoutFiles')))
      : el('p', { class: 'muted' }, t('noPayoutFiles')));
    return section('payouts', t('awardsPayouts'), ...parts);
  }

  async function queuePanel() {
    const list = await api('operator', '/bpd/ops/complaints?status=OPEN&limit=100');
    if (!list.length) return section('queue', t('complaintsQueue'), el('p', { class: 'muted' }, t('noOpenComplaints')));
    const rows = list.map((c) => {
      const corr = el('input', { type: 'number', min: '0', step: '1', 'aria-label': t('correction') + ' #' + c.complaintId, class: 'small' });
      const decide = async (decision) => {
        try {
          const body = { decision };
          if (decision === 'ACCEPT' && corr.value !== '') body.correctionCents = Number(corr.value);
          await api('operator', '/bpd/ops/complaints/' + c.complaintId + '/decision', { method: 'POST', json: body });
          announce(t('decided', { id: c.complaintId, decision }), 'ok');
          route();
        } catch (e) { showError(e); }
      };
      return el('tr', {},
        el('td', {}, String(c.complaintId)), el('td', {}, day(c.createdAt)), el('td', {}, String(c.awardPeriodId)),
        el('td', {}, t('kind_' + c.kind)), el('td', {}, c.description), el('td', {}, corr),
        el('td', { class: 'actions' },
          el('button', { type: 'button', onclick: () => decide('ACCEPT') }, t('accept')),
          el('button', { type: 'button', class: 'secondary', onclick: () => decide('REJECT') }, t('reject'))));
    });
    return section('queue', t('complaintsQueue'), el('div', { class: 'scroll' },
      table(['#', t('created'), t('period'), t('kind'), t('description'), t('correction'), ''], rows, t('complaintsQueue'))));
  }

  // ---- start --------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('lang-select').addEventListener('change', (ev) => {
      lang = ev.target.value;
      localStorage.setItem(KEY_LANG, lang);
      route();
    });
    // A new screen starts with no message; an action's re-render keeps its own.
    window.addEventListener('hashchange', () => { announce(''); route(); });
    let resized;
    window.addEventListener('resize', () => { clearTimeout(resized); resized = setTimeout(route, 300); });
    route();
  });
})();
