'use strict';
// The flashsale live board. Every number comes from the server's snapshot (GET /admin/events,
// Server-Sent Events); this script only draws it.

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
let csrf = '';
let source = null;
let lastMessage = 0;

// Charts span the last 3 minutes, or less while there is less to show (at least MIN_WINDOW s).
const MIN_WINDOW = 20;

const OUTCOMES = [
  ['ok', 'ok', 'good'],
  ['sold_out', 'sold out', 'warn'],
  ['duplicate', 'duplicate', ''],
  ['limit', 'limit', ''],
  ['closed', 'closed', ''],
  ['unknown_item', 'unknown item', ''],
  ['invalid', 'invalid', ''],
  ['unavailable', 'unavailable', 'bad'],
  ['error', 'errors', 'bad'],
];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtInt(n) { return Number(n).toLocaleString('en-US'); }
function fmtRate(r) { return r >= 100 ? fmtInt(Math.round(r)) : r.toFixed(1); }
function fmtTime(s) {
  if (!s) return '';
  return new Date(s).toLocaleTimeString('en-GB', { hour12: false });
}
function fmtDateTime(s) {
  const d = new Date(s);
  return d.toLocaleDateString('en-CA') + ' ' + d.toLocaleTimeString('en-GB', { hour12: false, hour: '2-digit', minute: '2-digit' });
}
function fmtMS(ms) {
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + Math.floor(s % 60) + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}
function fmtLatency(ms) {
  if (ms === null || ms === undefined) return '–';
  return ms < 1 ? (ms * 1000).toFixed(0) + ' µs' : ms.toFixed(ms < 10 ? 2 : 1) + ' ms';
}

function setConn(state, text) {
  const c = $('conn');
  c.className = 'pill ' + state;
  c.textContent = text;
}

// A line chart of one or more series (oldest first) in an SVG that fills its box.
function chart(box, series, opts) {
  const w = 360, h = opts.height || 48;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const n = opts.points;
  let top = 1;
  for (const s of series) for (const v of s.values) top = Math.max(top, v);
  for (const s of series) {
    const vals = s.values;
    const off = n - vals.length;
    const pts = vals.map((v, i) => [((off + i) / (n - 1)) * w, h - 2 - (v / top) * (h - 6)]);
    if (pts.length === 0) continue;
    if (s.area) {
      const area = document.createElementNS(SVG, 'path');
      area.setAttribute('d', `M${pts[0][0]},${h} L` + pts.map((p) => p.join(',')).join(' L') + ` L${pts[pts.length - 1][0]},${h} Z`);
      area.setAttribute('class', 'area ' + s.cls);
      svg.appendChild(area);
    }
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', pts.map((p) => p.join(',')).join(' '));
    line.setAttribute('class', 'line ' + s.cls);
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.appendChild(line);
  }
  box.replaceChildren(svg);
  if (opts.label) {
    box.appendChild(el('span', 'chart-max', opts.label(top)));
  }
}

function renderOutcomes(p) {
  const box = $('outcomes');
  box.replaceChildren();
  for (const [key, label, cls] of OUTCOMES) {
    const rate = p.per_s[key] || 0;
    const total = p.total[key] || 0;
    const t = el('div', 'outcome ' + cls + (total === 0 ? ' zero' : ''));
    t.dataset.outcome = key;
    t.appendChild(el('div', 'rate', fmtRate(rate)));
    t.appendChild(el('div', 'label', label));
    t.appendChild(el('div', 'total', fmtInt(total) + ' total'));
    box.appendChild(t);
  }
  $('p50').textContent = fmtLatency(p.p50_ms);
  $('p99').textContent = fmtLatency(p.p99_ms);
  chart($('rate-chart'), [
    { values: p.chart, cls: 'all', area: true },
    { values: p.ok_chart, cls: 'ok' },
  ], { points: Math.max(MIN_WINDOW, p.chart.length), height: 70, label: (top) => 'peak ' + fmtRate(top) + '/s' });
}

function renderSoldOut(s) {
  const box = $('sold-out-answers');
  if (!s) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(
    el('span', '', 'sold out from memory '),
    el('b', '', fmtRate(s.local_per_s) + '/s'),
    el('span', 'muted', ' (' + fmtInt(s.local) + ' total) · from Redis '),
    el('b', '', fmtRate(s.redis_per_s) + '/s'),
    el('span', 'muted', ' (' + fmtInt(s.redis) + ' total) · leased partitions ' + s.leased_partitions + '/' + s.partitions),
  );
  box.title = 'Sold-out answers of this process: from the winner index (no Redis command) and from the purchase script; a partition is answered from memory while its sold-out lease holds.';
}

function statusBadge(it) {
  switch (it.status) {
    case 'sold_out': return ['SOLD OUT', 'badge soldout'];
    case 'not_started': return ['NOT STARTED', 'badge idle'];
    case 'ended': return ['ENDED', 'badge idle'];
  }
  return ['ON SALE', 'badge onsale'];
}

function renderItems(snap) {
  const box = $('items');
  box.replaceChildren();
  if (snap.items.length === 0) {
    box.appendChild(el('p', 'muted', 'No items yet: put one on sale below.'));
  }
  let first = 180;
  for (const it of snap.items) {
    const i = it.chart.findIndex((n) => n > 0);
    if (i >= 0) first = Math.min(first, i);
  }
  const span = Math.min(180, Math.max(MIN_WINDOW, 180 - first));
  for (const it of snap.items) {
    const card = el('div', 'card item ' + it.status);
    card.dataset.item = it.item_id;
    const head = el('div', 'item-head');
    head.appendChild(el('h3', 'item-id', it.item_id));
    const [text, cls] = statusBadge(it);
    head.appendChild(el('span', cls, text));
    card.appendChild(head);

    const big = el('div', 'big');
    const left = el('span', 'left', fmtInt(it.left));
    left.dataset.left = String(it.left);
    big.appendChild(left);
    big.appendChild(el('span', 'of', ' left of ' + fmtInt(it.put_on_sale)));
    card.appendChild(big);

    const bar = el('div', 'bar');
    const fill = el('div', 'fill');
    const pct = it.put_on_sale > 0 ? Math.min(100, (100 * it.sold) / it.put_on_sale) : 0;
    fill.style.width = pct.toFixed(1) + '%';
    bar.appendChild(fill);
    card.appendChild(bar);

    const facts = el('div', 'facts');
    facts.appendChild(el('span', '', fmtInt(it.sold) + ' sold'));
    facts.appendChild(el('span', 'rate', fmtRate(it.orders_per_s) + ' orders/s'));
    facts.appendChild(el('span', '', it.per_user_limit > 0 ? 'limit ' + it.per_user_limit + '/user' : 'no user limit'));
    if (it.restocked > 0) facts.appendChild(el('span', '', fmtInt(it.restocked) + ' restocked'));
    card.appendChild(facts);

    const c = el('div', 'chart');
    chart(c, [{ values: it.chart.slice(180 - span), cls: it.status === 'sold_out' ? 'done' : 'all', area: true }],
      { points: span, height: 44, label: (top) => 'peak ' + fmtInt(top) + '/s' });
    card.appendChild(c);

    const foot = el('div', 'item-foot muted small');
    let win = 'window: ';
    if (!it.starts_at && !it.ends_at) win += 'always open';
    else win += (it.starts_at ? fmtDateTime(it.starts_at) : '…') + ' → ' + (it.ends_at ? fmtDateTime(it.ends_at) : '…');
    foot.appendChild(el('span', '', win));
    if (it.draw) foot.appendChild(el('span', '', it.draw.state + ' · draw at ' + fmtDateTime(it.draw.draw_at)));
    if (it.sold_out_at) {
      const s = el('span', 'soldout-at', 'sold out at ' + fmtTime(it.sold_out_at));
      foot.appendChild(s);
    }
    card.appendChild(foot);
    box.appendChild(card);
  }
  $('items-note').textContent = (snap.more_items > 0 ? `${snap.more_items} more not shown · ` : '') +
    (snap.catching_up ? 'reading the ledger… · ' : '') + 'charts: orders per second, last ' + (span >= 180 ? '3 min' : span + ' s');
}

function renderPartitions(snap) {
  const body = $('partitions');
  body.replaceChildren();
  $('group').textContent = 'group ' + snap.group + ' · idle warning after ' + fmtMS(snap.idle_warn_ms);
  for (const p of snap.partitions) {
    const tr = el('tr', p.warn ? 'warn' : '');
    tr.dataset.partition = String(p.partition);
    tr.appendChild(el('td', '', String(p.partition)));
    tr.appendChild(el('td', 'num', p.exists ? fmtInt(p.lag) : '–'));
    tr.appendChild(el('td', 'num', p.exists ? fmtInt(p.pending) : '–'));
    tr.appendChild(el('td', 'num', p.oldest_id ? fmtMS(p.oldest_age_ms) : '–'));
    const cs = el('td', 'consumers');
    if (!p.exists) cs.appendChild(el('span', 'muted', 'no group yet'));
    else if (p.consumers.length === 0) cs.appendChild(el('span', 'muted', 'none'));
    for (const c of p.consumers) {
      const chip = el('span', 'chip' + (c.stuck ? ' stuck' : ''), `${c.name} · ${fmtInt(c.pending)} · ${fmtMS(c.idle_ms)}`);
      chip.dataset.consumer = c.name;
      cs.appendChild(chip);
    }
    tr.appendChild(cs);
    body.appendChild(tr);
  }
}

function renderList(box, lines) {
  box.replaceChildren();
  for (const l of lines) box.appendChild(el('li', '', l));
}

function renderAudit(snap) {
  const btn = $('audit-run');
  const status = $('audit-status');
  const a = snap.audit;
  btn.disabled = !snap.audit_available || snap.audit_running;
  btn.textContent = snap.audit_running ? 'Running…' : 'Run audit';
  if (!snap.audit_available) {
    status.className = 'audit-status muted';
    status.textContent = 'Unavailable here: this process has no MySQL (flashsale ingest). Run flashsale audit, or open the board of flashsale serve.';
    $('audit-detail').textContent = '';
    $('audit-violations').replaceChildren();
    return;
  }
  if (!a) {
    status.className = 'audit-status muted';
    status.textContent = snap.audit_running ? 'running…' : 'not run yet';
    return;
  }
  if (a.error) {
    status.className = 'audit-status bad';
    status.textContent = a.error;
  } else if (a.clean) {
    status.className = 'audit-status good';
    status.textContent = '✓ clean: stock + sold = put on sale, MySQL matches the ledger';
  } else {
    status.className = 'audit-status bad';
    status.textContent = `✗ ${a.violation_count} violation(s)`;
  }
  $('audit-detail').textContent = `at ${fmtTime(a.at)} · took ${fmtMS(a.took_ms)} · ${a.items} item(s)` +
    (a.pending > 0 ? ` · ${fmtInt(a.pending)} entries not yet projected` : '');
  renderList($('audit-violations'), a.violations);
}

function render(snap) {
  lastMessage = Date.now();
  setConn('live', 'live');
  $('clock').textContent = fmtTime(snap.now);
  renderList($('warnings'), snap.warnings);
  renderList($('errors'), snap.errors);
  renderOutcomes(snap.purchases);
  renderSoldOut(snap.sold_out_answers);
  renderItems(snap);
  renderPartitions(snap);
  renderAudit(snap);
}

function connect() {
  if (source) source.close();
  setConn('wait', 'connecting…');
  source = new EventSource('events');
  source.onmessage = (e) => render(JSON.parse(e.data));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // The server refused the stream: signed out or expired, or it is still starting.
      checkSession(true);
      return;
    }
    setConn('wait', 'reconnecting…');
  };
}

// Marks the board stale when the stream goes quiet (the server may be restarting).
setInterval(() => {
  if (source && lastMessage && Date.now() - lastMessage > 3500) setConn('wait', 'reconnecting…');
}, 1000);

function showSignin(message) {
  if (source) { source.close(); source = null; }
  $('board').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  setConn('off', 'signed out');
  const m = $('signin-message');
  m.hidden = !message;
  m.textContent = message || '';
  $('token').focus();
}

function showBoard() {
  $('signin').hidden = true;
  $('board').hidden = false;
  $('signout').hidden = false;
  connect();
}

async function checkSession(fromStream) {
  let r;
  try {
    r = await fetch('session', { credentials: 'same-origin' });
  } catch (e) {
    setConn('wait', 'reconnecting…');
    setTimeout(() => checkSession(fromStream), 2000);
    return;
  }
  if (r.status === 401) {
    showSignin(fromStream ? 'Your session ended; sign in again.' : '');
    return;
  }
  if (!r.ok) {
    setConn('wait', 'reconnecting…');
    setTimeout(() => checkSession(fromStream), 2000);
    return;
  }
  csrf = (await r.json()).csrf_token || '';
  if (fromStream) setTimeout(connect, 1000); else showBoard();
}

async function send(method, url, body) {
  const headers = { 'X-CSRF-Token': csrf };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(url, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  let data = {};
  try { data = await r.json(); } catch (e) { /* empty body */ }
  if (r.status === 401) showSignin('Your session ended; sign in again.');
  return { ok: r.ok, status: r.status, data };
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const r = await fetch('login', { method: 'POST', credentials: 'same-origin', body: new URLSearchParams({ token: $('token').value }) });
  if (!r.ok) {
    showSignin(r.status === 401 ? 'Wrong token.' : 'Sign-in failed (' + r.status + ').');
    return;
  }
  csrf = (await r.json()).csrf_token;
  $('token').value = '';
  showBoard();
});

$('signout').addEventListener('click', async () => {
  await send('POST', 'logout');
  csrf = '';
  showSignin('Signed out.');
});

$('audit-run').addEventListener('click', async () => {
  $('audit-run').disabled = true;
  $('audit-run').textContent = 'Running…';
  await send('POST', 'audit');
});

function localToRFC3339(v) { return v ? new Date(v).toISOString() : undefined; }

$('item-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const id = $('f-item').value.trim();
  const body = {};
  body[$('f-op').value] = parseInt($('f-qty').value, 10);
  if ($('f-limit').value !== '') body.per_user_limit = parseInt($('f-limit').value, 10);
  if ($('f-start').value) body.starts_at = localToRFC3339($('f-start').value);
  if ($('f-end').value) body.ends_at = localToRFC3339($('f-end').value);
  if ($('f-pay').value.trim()) body.pay_within = $('f-pay').value.trim();
  if ($('f-draw').value) {
    body.draw_at = localToRFC3339($('f-draw').value);
    body.draw_commitment = $('f-commit').value.trim();
  }
  const r = await send('PUT', 'items/' + encodeURIComponent(id), body);
  const m = $('item-message');
  m.hidden = false;
  if (r.ok) {
    m.className = 'message good';
    m.textContent = `${r.data.item_id}: ${fmtInt(r.data.stock)} left` + (r.data.per_user_limit ? `, limit ${r.data.per_user_limit}/user` : '') +
      (r.data.draw ? `, ${r.data.draw.state}, draw at ${fmtDateTime(r.data.draw.draw_at)}` : '');
  } else {
    m.className = 'message bad';
    m.textContent = `Refused (${r.status}): ${r.data.message || 'error'}`;
  }
});

checkSession(false);
