// secondread worklist page. Plain JavaScript, no build step, no external
// resources. The access token is kept in a variable of this closure only:
// never in localStorage, sessionStorage or cookies, and no patient data is
// written to browser storage. All text from the API is put in the page with
// textContent, never parsed as HTML.
'use strict';

(function () {
  const REFRESH_MS = 10000;      // the worklist refreshes itself this often
  const NEW_BADGE_MS = 60000;    // how long a row that appeared keeps its NEW badge
  const LIST_LIMIT = 100;

  let token = null;              // in memory only

  const STATUS_LABEL = {
    new: 'New', in_review: 'In review', agreed: 'Agreed',
    disagreed: 'Disagreed', dismissed: 'Dismissed'
  };
  const VERDICT_LABEL = {
    agree: 'Agree', disagree: 'Disagree', uncertain: 'Uncertain', dismiss: 'Dismiss'
  };

  const list = {
    items: [],
    prev: null,          // study_id -> flagged, from the previous refresh
    baseKey: null,       // filter key the previous refresh was made with
    newSince: new Map(), // study_id -> time it appeared or became flagged
    selected: null,      // study_id of the selected row
    seq: 0,
    loading: false,
    modalities: new Set(),
    models: new Set()
  };
  const detail = {
    id: null, data: null, seq: 0, posting: false,
    blobs: new Map(),    // image_url -> blob URL, for the study shown; revoked on leaving it
    notice: null,        // {studyId, kind, title, text}, survives a reload of the study
    dismissArmed: null   // timer while the Dismiss button waits for confirmation
  };
  let perfSeq = 0;
  let view = null;
  let refreshTimer = null;

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  // h('tag', {class, text, dataset..., attrs}, children...)
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    setProps(el, props);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return el;
  }
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return el;
  }
  function setProps(el, props) {
    if (!props) return;
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'testid') el.setAttribute('data-testid', v);
      else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'hidden') el.hidden = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  // DICOM person name "LAST^FIRST^MIDDLE^PREFIX^SUFFIX" -> "LAST, FIRST MIDDLE".
  function personName(pn) {
    if (!pn) return '—';
    const alpha = String(pn).split('=')[0];
    const [last = '', first = '', middle = '', prefix = '', suffix = ''] = alpha.split('^').map((x) => x.trim());
    const given = [prefix, first, middle].filter(Boolean).join(' ');
    let out = last;
    if (given) out = out ? out + ', ' + given : given;
    if (suffix) out += ' ' + suffix;
    return out || '—';
  }
  // DICOM date YYYYMMDD -> YYYY-MM-DD.
  function dicomDate(d) {
    if (!d) return '—';
    const m = /^(\d{4})(\d{2})(\d{2})$/.exec(String(d));
    return m ? m[1] + '-' + m[2] + '-' + m[3] : String(d);
  }
  function sexLabel(x) {
    return ({ F: 'Female', M: 'Male', O: 'Other' })[x] || (x ? String(x) : '—');
  }
  function humanAge(sec) {
    if (sec === null || sec === undefined || !isFinite(sec)) return '—';
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return sec + ' s';
    const min = Math.floor(sec / 60);
    if (min < 60) return min + ' min';
    const hr = Math.floor(min / 60);
    if (hr < 48) return hr + ' h';
    return Math.floor(hr / 24) + ' d';
  }
  const pad2 = (n) => String(n).padStart(2, '0');
  function localTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' +
      pad2(d.getHours()) + ':' + pad2(d.getMinutes());
  }
  function clock(d) { return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds()); }
  function score(x) { return x === null || x === undefined ? '—' : Number(x).toFixed(2); }
  function threshold(x) { return x === null || x === undefined ? '—' : String(Number(Number(x).toFixed(3))); }
  function pct(x) { return x === null || x === undefined ? '—' : Math.round(x * 100) + '%'; }
  function signedPoints(x) {
    if (x === null || x === undefined) return '—';
    const v = Math.round(x * 100);
    return (v > 0 ? '+' : v < 0 ? '−' : '±') + Math.abs(v) + ' pts';
  }
  function signed(x) {
    if (x === null || x === undefined) return '—';
    return (x > 0 ? '+' : x < 0 ? '−' : '±') + Math.abs(x).toFixed(2);
  }
  function statusPill(status) {
    return h('span', { class: 'status status-' + (status || 'unknown'), data: { status: status || '' } },
      STATUS_LABEL[status] || status || '—');
  }
  function verdictPill(v) {
    return h('span', { class: 'verdict verdict-' + v }, VERDICT_LABEL[v] || v);
  }
  function clamp01(x) { return Math.min(1, Math.max(0, Number(x) || 0)); }

  // A score bar: fill up to the score, a marker at the operating point.
  function scoreBar(value, thr, above, small) {
    const bar = h('div', {
      class: 'scorebar' + (small ? ' scorebar-small' : '') + (above ? ' is-above' : ''),
      role: 'img',
      'aria-label': 'score ' + score(value) + ', operating point ' + threshold(thr)
    });
    const fill = h('div', { class: 'scorebar-fill' });
    fill.style.width = (clamp01(value) * 100).toFixed(1) + '%';
    bar.appendChild(fill);
    if (thr !== null && thr !== undefined) {
      const mark = h('div', { class: 'scorebar-marker' });
      mark.style.left = (clamp01(thr) * 100).toFixed(1) + '%';
      bar.appendChild(mark);
    }
    return bar;
  }

  // --------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.message || body.error)) || ('HTTP ' + status));
      this.status = status;
      this.body = body;
    }
  }
  class AuthError extends Error {}
  class NetError extends Error {}

  async function api(path, opts) {
    opts = opts || {};
    if (!token) { showSignin(); throw new AuthError('not signed in'); }
    const headers = { Authorization: 'Bearer ' + token };
    const init = { method: opts.method || 'GET', headers, cache: 'no-store', credentials: 'omit' };
    if (!opts.blob) headers.Accept = 'application/json';
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      connection(false);
      throw new NetError('network');
    }
    connection(true);
    if (res.status === 401) {
      token = null;
      showSignin('Please sign in again: the node did not accept the token.');
      throw new AuthError('unauthenticated');
    }
    if (opts.blob && res.ok) return res.blob();
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) throw new ApiError(res.status, body);
    return body;
  }

  function connection(ok) {
    const b = $('conn-banner');
    if (ok) { b.hidden = true; return; }
    b.textContent = 'Cannot reach the secondread node. The page keeps retrying every 10 seconds.';
    b.hidden = false;
  }

  function errorText(e) {
    if (e instanceof NetError) return 'Cannot reach the secondread node.';
    if (e instanceof ApiError) {
      if (e.status === 403) return 'Your account may not do this (an admin account cannot review).';
      if (e.status === 404) return 'Not found: the study or image does not exist any more.';
      return 'The node answered with an error (' + e.status + '): ' + e.message;
    }
    return String(e && e.message || e);
  }

  // --------------------------------------------------------- sign in / out

  function showSignin(message) {
    stopRefresh();
    for (const v of ['view-worklist', 'view-detail', 'view-performance']) $(v).hidden = true;
    $('nav').hidden = true;
    $('signin').hidden = false;
    const err = $('signin-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('signin-token').value = '';
    $('signin-token').focus();
  }

  function onSignin(ev) {
    ev.preventDefault();
    const v = $('signin-token').value.trim();
    if (!v) return;
    token = v;
    $('signin-token').value = '';
    $('signin').hidden = true;
    $('signin-error').hidden = true;
    route();
  }

  function signOut() {
    token = null;
    revokeBlobs();
    list.items = []; list.prev = null; list.newSince.clear();
    clear($('worklist-body'));
    detail.data = null; detail.notice = null;
    clear($('perf-body'));
    history.replaceState(null, '', location.pathname + location.search);
    showSignin('Signed out.');
  }

  // ---------------------------------------------------------------- routing

  function route() {
    if (!token) { showSignin(); return; }
    $('signin').hidden = true;
    $('nav').hidden = false;
    const hash = location.hash || '';
    let m;
    if ((m = /^#\/study\/(\d+)$/.exec(hash))) showDetail(Number(m[1]));
    else if (hash === '#/performance') showPerformance();
    else showWorklist();
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;  // hashchange calls route()
  }

  function setView(name) {
    view = name;
    $('view-worklist').hidden = name !== 'worklist';
    $('view-detail').hidden = name !== 'detail';
    $('view-performance').hidden = name !== 'performance';
    $('nav-worklist').setAttribute('aria-current', name === 'worklist' || name === 'detail' ? 'page' : 'false');
    $('nav-performance').setAttribute('aria-current', name === 'performance' ? 'page' : 'false');
    if (name !== 'detail') { revokeBlobs(); disarmDismiss(); }
    if (name === 'worklist') startRefresh(); else stopRefresh();
  }

  // --------------------------------------------------------------- worklist

  function filterParams() {
    const p = new URLSearchParams();
    const st = $('f-status').value, mod = $('f-modality').value, model = $('f-model').value;
    if (st) p.set('status', st);
    if (mod) p.set('modality', mod);
    if (model) p.set('model', model);
    if ($('f-flagged').checked) p.set('flagged', 'true');
    p.set('limit', String(LIST_LIMIT));
    return p;
  }

  function showWorklist() {
    const first = view !== 'worklist';
    setView('worklist');
    document.title = 'Worklist — secondread';
    loadList();
    if (first) {
      const row = selectedRow();
      if (row) row.querySelector('.rowopen').focus({ preventScroll: false });
    }
  }

  function startRefresh() {
    if (refreshTimer) return;
    refreshTimer = setInterval(() => {
      if (view === 'worklist' && token && !document.hidden) loadList();
    }, REFRESH_MS);
  }
  function stopRefresh() {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  async function loadList() {
    const params = filterParams();
    const key = params.toString();
    const seq = ++list.seq;
    let data;
    try {
      data = await api('/api/v1/worklist?' + key);
    } catch (e) {
      if (seq !== list.seq || e instanceof AuthError) return;
      $('worklist-updated').textContent = errorText(e);
      return;
    }
    if (seq !== list.seq) return;  // a newer request (filters changed) answers instead
    const items = Array.isArray(data && data.items) ? data.items : [];
    const now = Date.now();
    // NEW: rows that appeared, or became flagged, since the previous refresh
    // with the same filters.
    if (key !== list.baseKey) { list.prev = null; list.baseKey = key; }
    if (list.prev) {
      for (const it of items) {
        const was = list.prev.get(it.study_id);
        if (was === undefined || (it.flagged && !was)) list.newSince.set(it.study_id, now);
      }
    }
    list.prev = new Map(items.map((it) => [it.study_id, !!it.flagged]));
    for (const [id, t] of list.newSince) if (now - t >= NEW_BADGE_MS) list.newSince.delete(id);

    list.items = items;
    for (const it of items) {
      if (it.modality) list.modalities.add(it.modality);
      if (it.model) list.models.add(it.model);
    }
    fillOptions($('f-modality'), list.modalities);
    fillOptions($('f-model'), list.models);
    renderList(now);
    const total = typeof data.total === 'number' ? data.total : items.length;
    $('worklist-count').textContent = total > items.length
      ? 'Showing the first ' + items.length + ' of ' + total + ' studies.'
      : items.length + (items.length === 1 ? ' study.' : ' studies.');
    const fresh = items.filter((it) => isNew(it.study_id, now)).length;
    $('worklist-updated').textContent = 'Updated ' + clock(new Date(now)) + ' · refreshes every 10 s' +
      (fresh ? ' · ' + fresh + ' new' : '');
  }

  function fillOptions(select, values) {
    const cur = select.value;
    const have = new Set(Array.from(select.options).map((o) => o.value));
    const sorted = Array.from(values).sort();
    let changed = sorted.some((v) => !have.has(v));
    if (!changed) return;
    clear(select);
    select.appendChild(h('option', { value: '', text: 'All' }));
    for (const v of sorted) select.appendChild(h('option', { value: v, text: v }));
    select.value = cur;
  }

  function isNew(id, now) {
    const t = list.newSince.get(id);
    return t !== undefined && (now || Date.now()) - t < NEW_BADGE_MS;
  }

  function renderList(now) {
    const body = $('worklist-body');
    const hadFocus = body.contains(document.activeElement);
    clear(body);
    const items = list.items;
    $('worklist-empty').hidden = items.length > 0;
    if (!items.some((it) => it.study_id === list.selected)) {
      list.selected = items.length ? items[0].study_id : null;
    }
    for (const it of items) body.appendChild(listRow(it, now));
    markSelected(hadFocus);
  }

  function listRow(it, now) {
    const fresh = isNew(it.study_id, now);
    const stat = String(it.priority || '').toUpperCase() === 'STAT';
    const flagCell = h('td', { class: 'col-flag' },
      it.flagged
        ? h('span', { class: 'flag', title: 'Flagged by the AI: a finding is above the operating point', testid: 'flag-marker' },
          h('span', { 'aria-hidden': 'true', text: '⚑' }), h('span', { class: 'sr-only', text: 'Flagged by AI' }))
        : h('span', { class: 'noflag', 'aria-hidden': 'true', text: '·' }),
      fresh ? h('span', { class: 'badge-new', testid: 'new-badge', text: 'NEW' }) : null);

    const above = it.top_score !== null && it.top_score !== undefined &&
      it.threshold !== null && it.threshold !== undefined && Number(it.top_score) >= Number(it.threshold);
    const finding = it.top_label
      ? h('div', { class: 'topfinding' },
        h('span', { class: 'label', text: it.top_label }),
        scoreBar(it.top_score, it.threshold, above, true),
        h('span', { class: 'nums' + (above ? ' is-above' : '') },
          score(it.top_score), h('span', { class: 'muted', text: ' / ' + threshold(it.threshold) })))
      : h('span', { class: 'muted', text: 'No finding' });

    const open = h('button', {
      type: 'button', class: 'rowopen', testid: 'row-open',
      'aria-label': 'Open study of ' + personName(it.patient_name) + ', accession ' + (it.accession_number || 'none'),
      on: { click: (ev) => { ev.stopPropagation(); openStudy(it.study_id); } }
    }, personName(it.patient_name));

    const tr = h('tr', {
      class: 'row' + (it.flagged ? ' is-flagged' : '') + (fresh ? ' is-new' : '') + (stat ? ' is-stat' : ''),
      testid: 'worklist-row',
      data: {
        studyId: it.study_id, accession: it.accession_number || '', flagged: !!it.flagged, model: it.model || '',
        status: it.status || '', isNew: fresh
      },
      on: { click: () => { list.selected = it.study_id; markSelected(false); openStudy(it.study_id); } }
    },
    flagCell,
    h('td', null, stat ? h('span', { class: 'prio-stat', text: 'STAT' }) : h('span', { class: 'prio muted', text: it.priority ? cap(it.priority) : '—' })),
    h('td', { class: 'age', title: it.arrived_at ? 'Arrived ' + localTime(it.arrived_at) : null }, humanAge(it.age_seconds)),
    h('td', { class: 'patient' }, open, h('span', { class: 'pid muted', text: 'ID ' + (it.patient_id || '—') })),
    h('td', { class: 'mono', testid: 'row-accession' }, it.accession_number || '—'),
    h('td', null, it.modality || '—'),
    h('td', { class: 'model' }, it.model || '—', it.model_version !== undefined && it.model_version !== null ? h('span', { class: 'muted', text: ' v' + it.model_version }) : null),
    h('td', null, finding),
    h('td', { testid: 'row-status' }, statusPill(it.status)));
    return tr;
  }

  function cap(x) { x = String(x); return x.charAt(0).toUpperCase() + x.slice(1); }

  function selectedRow() {
    if (list.selected === null) return null;
    return document.querySelector('#worklist-body tr[data-study-id="' + list.selected + '"]');
  }

  function markSelected(focus) {
    for (const tr of document.querySelectorAll('#worklist-body tr.is-selected')) {
      tr.classList.remove('is-selected');
      tr.removeAttribute('aria-current');
    }
    const row = selectedRow();
    if (!row) return;
    row.classList.add('is-selected');
    row.setAttribute('aria-current', 'true');
    if (focus) row.querySelector('.rowopen').focus({ preventScroll: true });
    row.scrollIntoView({ block: 'nearest' });
  }

  function moveSelection(delta) {
    if (!list.items.length) return;
    let i = list.items.findIndex((it) => it.study_id === list.selected);
    i = i < 0 ? 0 : Math.min(list.items.length - 1, Math.max(0, i + delta));
    list.selected = list.items[i].study_id;
    markSelected(true);
  }

  function openStudy(id) {
    list.selected = id;
    go('#/study/' + id);
  }

  // ----------------------------------------------------------------- detail

  function revokeBlobs() {
    for (const u of detail.blobs.values()) URL.revokeObjectURL(u);
    detail.blobs.clear();
  }

  function showDetail(id) {
    if (detail.id !== id) {
      revokeBlobs();
      detail.notice = null;
      $('review-comment').value = '';
    }
    detail.id = id;
    setView('detail');
    loadDetail(id, true);
  }

  async function loadDetail(id, fresh) {
    const seq = ++detail.seq;
    if (fresh) {
      $('detail-loading').hidden = false;
      $('detail-body').hidden = true;
      $('detail-title').textContent = 'Study';
      clear($('detail-status'));
      renderNotice();
    }
    let data;
    try {
      data = await api('/api/v1/studies/' + encodeURIComponent(id));
    } catch (e) {
      if (seq !== detail.seq || e instanceof AuthError) return;
      $('detail-loading').hidden = false;
      $('detail-loading').textContent = errorText(e);
      return;
    }
    if (seq !== detail.seq || view !== 'detail') return;
    detail.data = data;
    $('detail-loading').hidden = true;
    $('detail-loading').textContent = 'Loading study…';
    renderDetail(data);
    $('detail-body').hidden = false;
    if (fresh) $('detail-title').focus({ preventScroll: true });
  }

  function renderDetail(d) {
    const p = d.patient || {};
    const wl = d.worklist || {};
    $('view-detail').dataset.studyId = String(d.study_id);
    $('view-detail').dataset.version = String(wl.version);
    $('detail-title').textContent = personName(p.name) + ' · ' + (d.accession_number || 'no accession');
    document.title = personName(p.name) + ' — secondread';
    const st = $('detail-status');
    clear(st);
    st.className = 'status-wrap';
    st.appendChild(statusPill(wl.status));
    if (wl.flagged) st.appendChild(h('span', { class: 'flag flag-inline', text: '⚑ Flagged by AI' }));
    if (String(wl.priority || '').toUpperCase() === 'STAT') st.appendChild(h('span', { class: 'prio-stat', text: 'STAT' }));

    // Identifiers.
    const ids = $('detail-ids');
    clear(ids);
    const row = (k, v, cls, testid) => {
      ids.appendChild(h('dt', { text: k }));
      ids.appendChild(h('dd', { class: cls || null, testid: testid || null, text: v }));
    };
    row('Patient', personName(p.name), 'strong', 'detail-patient-name');
    row('Patient ID', p.id || '—', 'mono', 'detail-patient-id');
    row('Birth date', dicomDate(p.birth_date));
    row('Sex', sexLabel(p.sex));
    row('Accession', d.accession_number || '—', 'mono', 'detail-accession');
    row('Study date', dicomDate(d.study_date));
    row('Description', d.study_description || '—');
    row('Priority', wl.priority ? cap(wl.priority) : '—');
    row('Study UID', d.study_instance_uid || '—', 'mono small uid');

    // Images: fetched with the token, shown through blob URLs (kept while
    // this study is shown, so a reload after a review does not flicker).
    const images = $('detail-images');
    clear(images);
    const reads = Array.isArray(d.reads) ? d.reads : [];
    let nimg = 0;
    for (const r of reads) {
      for (const res of r.results || []) {
        if (!res.image_url) continue;
        nimg++;
        images.appendChild(previewFigure(r, res));
      }
    }
    if (!nimg) images.appendChild(h('p', { class: 'muted', text: 'No AI image for this study.' }));

    // Findings.
    $('detail-disclaimer').textContent = d.disclaimer || 'AI result for radiologist review. Not a diagnosis.';
    const fl = $('detail-findings');
    clear(fl);
    if (!reads.length) fl.appendChild(h('p', { class: 'muted', text: 'No AI read for this study.' }));
    for (const r of reads) fl.appendChild(readFindings(r, reads.length > 1));

    // Review history, newest first.
    const hist = $('detail-history');
    clear(hist);
    const findingLabel = new Map();
    for (const r of reads) for (const f of r.findings || []) findingLabel.set(f.finding_id, f.label);
    const reviews = (Array.isArray(d.reviews) ? d.reviews.slice() : [])
      .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)) || (b.review_id - a.review_id));
    if (!reviews.length) hist.appendChild(h('li', { class: 'muted', text: 'Not reviewed yet.' }));
    for (const rv of reviews) {
      hist.appendChild(h('li', { testid: 'review-history-item', data: { verdict: rv.verdict } },
        h('div', { class: 'history-line' }, verdictPill(rv.verdict),
          h('span', { class: 'who', text: rv.reviewer || 'unknown' }),
          h('span', { class: 'muted small', text: localTime(rv.created_at) })),
        rv.finding_id !== null && rv.finding_id !== undefined
          ? h('div', { class: 'muted small', text: 'On finding: ' + (findingLabel.get(rv.finding_id) || '#' + rv.finding_id) })
          : null,
        rv.comment ? h('div', { class: 'comment', text: '“' + rv.comment + '”' }) : null));
    }

    // Reads and exports.
    const rd = $('detail-reads');
    clear(rd);
    for (const r of reads) rd.appendChild(readInfo(r));
    if (!reads.length) rd.appendChild(h('p', { class: 'muted', text: 'None.' }));

    renderNotice();
    setReviewEnabled(!detail.posting);
  }

  function previewFigure(read, res) {
    const img = h('img', {
      class: 'preview', testid: 'preview-image', id: 'preview-' + res.result_id,
      alt: 'AI secondary capture from ' + read.model + ': the source image with the AI heatmap and the burned-in AI banner'
    });
    const status = h('p', { class: 'muted small', text: 'Loading image…' });
    const zoom = h('button', {
      type: 'button', class: 'btn btn-small', text: 'Actual size',
      'aria-pressed': 'false',
      on: {
        click: () => {
          const on = fig.classList.toggle('is-actual');
          zoom.setAttribute('aria-pressed', on ? 'true' : 'false');
          zoom.textContent = on ? 'Fit to panel' : 'Actual size';
        }
      }
    });
    const fig = h('figure', { class: 'figure' },
      h('div', { class: 'img-frame' }, img),
      h('figcaption', null,
        h('span', { text: (read.model || 'model') + ' v' + read.model_version + ' · AI secondary capture' }), zoom),
      status);
    const show = (url) => {
      img.addEventListener('load', () => { status.remove(); fig.classList.remove('is-loading'); }, { once: true });
      img.addEventListener('error', () => { status.textContent = 'The image could not be shown.'; }, { once: true });
      img.src = url;
    };
    fig.classList.add('is-loading');
    const cached = detail.blobs.get(res.image_url);
    if (cached) { show(cached); return fig; }
    const studyId = detail.id;
    api(res.image_url, { blob: true }).then((blob) => {
      if (studyId !== detail.id || view !== 'detail') return;
      let url = detail.blobs.get(res.image_url);
      if (!url) {
        url = URL.createObjectURL(blob);
        detail.blobs.set(res.image_url, url);
      }
      show(url);
    }).catch((e) => {
      if (e instanceof AuthError) return;
      status.textContent = 'The image could not be loaded. ' + errorText(e);
    });
    return fig;
  }

  function readFindings(r, showModel) {
    const box = h('div', { class: 'read-findings', data: { readId: r.read_id } });
    if (showModel) box.appendChild(h('h4', { text: (r.model || 'model') + ' v' + r.model_version }));
    else box.appendChild(h('p', { class: 'muted small', text: 'Model: ' + (r.model || '—') + ' v' + r.model_version }));
    if (r.state && r.state !== 'done') {
      box.appendChild(h('p', { class: 'muted', text: 'AI read ' + r.state.replace('_', ' ') + '.' }));
    }
    if (r.state === 'failed' && r.error) {
      // A volume read refused for its geometry says why; the radiologist
      // must know this series was not read, and the reason.
      box.appendChild(h('p', { class: 'read-error', text: 'Not read: ' + r.error }));
    }
    const skipped = r.skipped_images || [];
    // The AI did not look at these: the radiologist must not take its
    // silence about them for a negative. Burned-in text keeps an image on
    // the node; any other reason is pixel data that did not decode.
    const burned = skipped.filter(s => String(s.reason || '').startsWith('burned_in'));
    const undecoded = skipped.length - burned.length;
    const images = n => n + (n === 1 ? ' image was' : ' images were');
    const them = n => (n === 1 ? 'it.' : 'them.');
    if (burned.length) {
      box.appendChild(h('p', { class: 'finding-skipped', testid: 'skipped-images',
        text: images(burned.length) + ' not shown to the AI: burned-in text may carry patient details. ' +
          'The AI result says nothing about ' + them(burned.length) }));
    }
    if (undecoded) {
      box.appendChild(h('p', { class: 'finding-skipped', testid: 'undecoded-images',
        text: images(undecoded) + ' not shown to the AI: the pixel data could not be decoded. ' +
          'The AI result says nothing about ' + them(undecoded) }));
    }
    const findings = (r.findings || []).slice().sort((a, b) => (b.score || 0) - (a.score || 0));
    if (!findings.length && !skipped.length && (!r.state || r.state === 'done')) {
      box.appendChild(h('p', { class: 'muted', text: 'No findings reported by the AI.' }));
    }
    for (const f of findings) {
      const above = f.above !== undefined ? !!f.above : Number(f.score) >= Number(f.threshold);
      const name = (f.code && f.code.meaning) || f.label || 'finding';
      box.appendChild(h('div', { class: 'finding' + (above ? ' is-above' : ''), testid: 'finding', data: { findingId: f.finding_id, above } },
        h('div', { class: 'finding-head' },
          h('span', { class: 'finding-name', text: name }),
          h('span', { class: 'finding-verdict ' + (above ? 'is-above' : 'is-below'), testid: 'finding-verdict' },
            above ? 'ABOVE operating point' : 'BELOW operating point')),
        scoreBar(f.score, f.threshold, above, false),
        h('div', { class: 'finding-nums muted small' },
          'AI score ' + score(f.score) + ' · operating point ' + threshold(f.threshold) +
          (f.peak ? ' · peak at row ' + Math.round(f.peak.row) + ', column ' + Math.round(f.peak.column) : '') +
          (f.code && f.code.value ? ' · ' + (f.code.scheme || '') + ' ' + f.code.value : ''))));
    }
    return box;
  }

  function readInfo(r) {
    const exports = r.exports || [];
    const res = r.results || [];
    return h('div', { class: 'read-info' },
      h('div', { class: 'read-line' },
        h('strong', { text: (r.model || 'model') + ' v' + r.model_version }),
        h('span', { class: 'muted small', text: ' · ' + (r.mode || '') + ' · ' + (r.state || '') }),
        h('div', { class: 'muted small', text: 'Read ' + localTime(r.done_at || r.triggered_at) + ' · results: ' +
          (res.length ? res.map((x) => (x.kind || '').toUpperCase()).join(', ') : 'none') })),
      exports.length
        ? h('table', { class: 'mini', testid: 'exports' },
          h('thead', null, h('tr', null, h('th', { scope: 'col', text: 'Sent to' }), h('th', { scope: 'col', text: 'State' }),
            h('th', { scope: 'col', text: 'Tries' }), h('th', { scope: 'col', text: 'When / error' }))),
          h('tbody', null, exports.map((x) => h('tr', { data: { state: x.state } },
            h('td', { text: x.destination || '—' }),
            h('td', null, h('span', { class: 'export export-' + x.state, text: x.state === 'sent' ? 'Sent' : x.state === 'dead' ? 'Failed' : x.state === 'pending' ? 'Pending' : String(x.state) })),
            h('td', { text: String(x.attempts ?? '—') }),
            h('td', { class: 'small', text: x.last_error ? x.last_error : localTime(x.sent_at) })))))
        : h('p', { class: 'muted small', text: 'No export to PACS.' }));
  }

  function renderNotice() {
    const box = $('review-status');
    const n = detail.notice;
    clear(box);
    if (!n || n.studyId !== detail.id) { box.hidden = true; box.className = 'review-status'; return; }
    box.className = 'review-status review-' + n.kind;
    box.dataset.kind = n.kind;
    box.appendChild(h('strong', { text: n.title }));
    for (const t of n.lines) box.appendChild(h('p', { text: t }));
    box.hidden = false;
  }

  function setReviewEnabled(on) {
    for (const b of document.querySelectorAll('.review-buttons button')) b.disabled = !on;
  }

  function disarmDismiss() {
    if (detail.dismissArmed) clearTimeout(detail.dismissArmed);
    detail.dismissArmed = null;
    const b = $('btn-dismiss');
    b.classList.remove('is-armed');
    clear(b);
    b.append('Dismiss ', h('kbd', { text: 'x' }));
  }

  function onVerdict(verdict) {
    if (view !== 'detail' || !detail.data || detail.posting) return;
    if (verdict === 'dismiss' && !detail.dismissArmed) {
      const b = $('btn-dismiss');
      b.classList.add('is-armed');
      clear(b);
      b.append('Confirm dismiss ', h('kbd', { text: 'x' }));
      detail.dismissArmed = setTimeout(disarmDismiss, 5000);
      return;
    }
    disarmDismiss();
    submitReview(verdict);
  }

  async function submitReview(verdict) {
    const d = detail.data;
    const id = d.study_id;
    const version = d.worklist && d.worklist.version;
    const comment = $('review-comment').value.trim();
    const body = { expected_version: version };
    if (comment) body.comment = comment;
    let path;
    if (verdict === 'dismiss') {
      path = '/api/v1/studies/' + id + '/dismiss';
    } else {
      path = '/api/v1/studies/' + id + '/reviews';
      body.verdict = verdict;
    }
    detail.posting = true;
    setReviewEnabled(false);
    detail.notice = { studyId: id, kind: 'pending', title: 'Saving your verdict…', lines: [] };
    renderNotice();
    try {
      const res = await api(path, { method: 'POST', body });
      const wl = (res && res.worklist) || {};
      $('review-comment').value = '';
      detail.notice = {
        studyId: id, kind: 'success',
        title: 'Recorded: ' + VERDICT_LABEL[verdict] + '.',
        lines: ['Status is now ' + (STATUS_LABEL[wl.status] || wl.status || 'updated') + '. Press Esc to go back to the worklist.']
      };
    } catch (e) {
      if (e instanceof AuthError) { detail.posting = false; return; }
      if (e instanceof ApiError && e.status === 409) {
        const b = e.body || {};
        const lr = b.last_review || {};
        const wl = b.worklist || {};
        const lines = [];
        if (lr.reviewer || lr.verdict) {
          lines.push((lr.reviewer || 'Another reviewer') + ' recorded “' + (VERDICT_LABEL[lr.verdict] || lr.verdict || '?') + '”' +
            (lr.created_at ? ' at ' + localTime(lr.created_at) : '') + (lr.comment ? ', comment: “' + lr.comment + '”' : '') + '.');
        } else if (b.message) {
          lines.push(cap(b.message) + '.');
        }
        lines.push('The study is now ' + (STATUS_LABEL[wl.status] || wl.status || 'changed') + '. It has been reloaded: please look again and decide.');
        detail.notice = { studyId: id, kind: 'conflict', title: 'Not recorded: someone else reviewed this study meanwhile.', lines };
      } else {
        detail.notice = { studyId: id, kind: 'error', title: 'Not recorded.', lines: [errorText(e)] };
      }
    }
    detail.posting = false;
    renderNotice();
    setReviewEnabled(true);
    if (detail.id === id && view === 'detail') await loadDetail(id, false);
  }

  // ------------------------------------------------------------ performance

  function showPerformance() {
    setView('performance');
    document.title = 'Model performance — secondread';
    loadPerformance();
  }

  async function loadPerformance() {
    const w = $('perf-window').value;
    const n = w === 'day' ? 14 : w === 'month' ? 12 : 8;
    const seq = ++perfSeq;
    $('perf-loading').hidden = false;
    let data;
    try {
      data = await api('/api/v1/models/performance?window=' + encodeURIComponent(w) + '&windows=' + n);
    } catch (e) {
      if (seq !== perfSeq || e instanceof AuthError) return;
      $('perf-loading').hidden = true;
      const body = $('perf-body');
      clear(body);
      body.appendChild(h('p', { class: 'form-error', role: 'alert', text: errorText(e) }));
      return;
    }
    if (seq !== perfSeq || view !== 'performance') return;
    $('perf-loading').hidden = true;
    const body = $('perf-body');
    clear(body);
    const models = Array.isArray(data && data.models) ? data.models : [];
    if (!models.length) body.appendChild(h('p', { class: 'empty muted', text: 'No model has read a study in this period.' }));
    for (const m of models) body.appendChild(perfModel(m, data.window || w));
  }

  function periodLabel(win, kind, short) {
    const a = new Date(win.start), b = new Date(win.end);
    if (isNaN(a)) return String(win.start || '');
    const fmt = (d, o) => d.toLocaleDateString(undefined, Object.assign({ timeZone: 'UTC' }, o));
    if (kind === 'month') return fmt(a, { month: 'short', year: short ? '2-digit' : 'numeric' });
    if (kind === 'day' || short) return fmt(a, { day: 'numeric', month: 'short' });
    const last = new Date(b.getTime() - 86400000);
    return fmt(a, { day: 'numeric', month: 'short' }) + ' – ' + fmt(last, { day: 'numeric', month: 'short', year: 'numeric' });
  }

  function perfModel(m, kind) {
    const wins = Array.isArray(m.windows) ? m.windows : [];
    const sum = (k) => wins.reduce((acc, w) => acc + (Number(w[k]) || 0), 0);
    const read = sum('studies_read'), flagged = sum('flagged'), reviewed = sum('reviewed');
    const agreed = sum('agreed'), disagreed = sum('disagreed');
    const agreement = agreed + disagreed ? agreed / (agreed + disagreed) : null;
    const alerts = wins.filter((w) => w.drift && w.drift.alert);
    const unit = kind === 'day' ? 'day' : kind === 'month' ? 'month' : 'week';

    const sec = h('section', {
      class: 'panel perf-model', testid: 'perf-model',
      data: { model: m.model, version: m.version }, 'aria-label': m.model + ' version ' + m.version
    });
    sec.appendChild(h('h3', null, m.model, h('span', { class: 'muted', text: ' v' + m.version })));
    if (alerts.length) {
      const w = alerts[alerts.length - 1];
      const dr = w.drift || {};
      sec.appendChild(h('div', { class: 'banner banner-warn', role: 'alert', testid: 'drift-alert' },
        h('strong', { text: 'Drift alert' }),
        ' — in the ' + unit + ' of ' + periodLabel(w, kind) + ' the flagged rate moved ' + signedPoints(dr.flagged_rate_delta) +
        ' and the mean score ' + signed(dr.mean_score_delta) + ' compared with the ' + unit +
        ' before. Check the input images and the model before relying on its flags.'));
    } else {
      sec.appendChild(h('p', { class: 'ok small', testid: 'drift-ok', text: '✓ No drift alert in this period.' }));
    }
    const tile = (label, value, testid, note) => h('div', { class: 'tile' },
      h('div', { class: 'tile-value', testid, text: value }), h('div', { class: 'tile-label', text: label }),
      note ? h('div', { class: 'tile-note muted small', text: note }) : null);
    sec.appendChild(h('div', { class: 'tiles' },
      tile('Studies read', String(read), 'perf-read'),
      tile('Flagged', String(flagged), 'perf-flagged', read ? pct(flagged / read) + ' of studies' : null),
      tile('Reviewed', String(reviewed), 'perf-reviewed'),
      tile('Agreement rate', pct(agreement), 'perf-agreement', agreed + disagreed ? agreed + ' agreed, ' + disagreed + ' disagreed' : 'no verdicts yet')));
    sec.appendChild(perfChart(wins, kind, m));
    sec.appendChild(perfTable(wins, kind));
    return sec;
  }

  // A line chart of agreement rate and flagged rate, drawn with DOM APIs.
  function perfChart(wins, kind, m) {
    const W = 720, H = 240, L = 48, R = 34, T = 16, B = 36;
    const pw = W - L - R, ph = H - T - B;
    const n = wins.length;
    const x = (i) => L + (n <= 1 ? pw / 2 : (i * pw) / (n - 1));
    const y = (v) => T + ph - clamp01(v) * ph;
    const titleId = 'chart-title-' + m.model.replace(/[^A-Za-z0-9_-]/g, '_') + '-' + m.version;
    const svg = s('svg', {
      class: 'chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': titleId,
      preserveAspectRatio: 'xMidYMid meet', 'data-testid': 'perf-chart'
    });
    svg.appendChild(s('title', { id: titleId },
      'Agreement rate and flagged rate per ' + (kind || 'window') + ' for ' + m.model + ' version ' + m.version));
    for (const g of [0, 0.25, 0.5, 0.75, 1]) {
      svg.appendChild(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(g), y2: y(g) }));
      svg.appendChild(s('text', { class: 'axis', x: L - 8, y: y(g) + 4, 'text-anchor': 'end' }, Math.round(g * 100) + '%'));
    }
    const step = n > 10 ? Math.ceil(n / 8) : 1;
    wins.forEach((w, i) => {
      if ((n - 1 - i) % step === 0) {
        svg.appendChild(s('text', { class: 'axis', x: x(i), y: H - 12, 'text-anchor': 'middle' }, periodLabel(w, kind, true)));
      }
    });
    const series = [
      { key: 'agreement_rate', cls: 'series-agree', label: 'Agreement rate', marker: 'circle' },
      { key: 'flagged_rate', cls: 'series-flag', label: 'Flagged rate', marker: 'rect' }
    ];
    for (const se of series) {
      // Break the line where a window has no value (no reviews yet).
      let d = '', pen = false;
      wins.forEach((w, i) => {
        const v = w[se.key];
        if (v === null || v === undefined) { pen = false; return; }
        d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1) + ' ';
        pen = true;
      });
      const g = s('g', { class: se.cls });
      if (d) g.appendChild(s('path', { class: 'line', d: d.trim() }));
      wins.forEach((w, i) => {
        const v = w[se.key];
        if (v === null || v === undefined) return;
        const tip = s('title', null, se.label + ', ' + periodLabel(w, kind) + ': ' + pct(v));
        const pt = se.marker === 'circle'
          ? s('circle', { class: 'pt', cx: x(i), cy: y(v), r: 4 }, tip)
          : s('rect', { class: 'pt', x: x(i) - 4, y: y(v) - 4, width: 8, height: 8 }, tip);
        g.appendChild(pt);
      });
      svg.appendChild(g);
    }
    const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
      h('li', null, h('span', { class: 'swatch swatch-agree' }), 'Agreement rate (radiologists agreed with the AI)'),
      h('li', null, h('span', { class: 'swatch swatch-flag' }), 'Flagged rate (studies the AI flagged)'));
    return h('figure', { class: 'chart-wrap' }, svg, legend);
  }

  function perfTable(wins, kind) {
    const th = (t) => h('th', { scope: 'col', text: t });
    const rows = wins.slice().reverse().map((w, idx) => {
      const dr = w.drift || {};
      return h('tr', { class: (dr.alert ? 'is-alert' : '') + (idx === 0 ? ' is-current' : ''), testid: 'perf-row' },
        h('th', { scope: 'row', text: periodLabel(w, kind) + (idx === 0 ? ' (latest)' : '') }),
        h('td', { text: String(w.studies_read ?? 0) }),
        h('td', { text: String(w.flagged ?? 0) }),
        h('td', { text: pct(w.flagged_rate) }),
        h('td', { text: String(w.reviewed ?? 0) }),
        h('td', { text: (w.agreed ?? 0) + ' / ' + (w.disagreed ?? 0) + ' / ' + (w.uncertain ?? 0) }),
        h('td', { class: 'strong', text: pct(w.agreement_rate) }),
        h('td', { text: pct(w.ppv) }),
        h('td', { text: score(w.mean_score) }),
        h('td', null, dr.alert ? h('span', { class: 'drift-flag', text: '⚠ ' }) : null,
          (dr.flagged_rate_delta === null || dr.flagged_rate_delta === undefined) &&
          (dr.mean_score_delta === null || dr.mean_score_delta === undefined)
            ? '—'
            : signedPoints(dr.flagged_rate_delta) + ', ' + signed(dr.mean_score_delta)));
    });
    return h('div', { class: 'table-wrap' },
      h('table', { class: 'perf-table', testid: 'perf-table' },
        h('caption', { class: 'sr-only', text: 'Figures per period, latest first' }),
        h('thead', null, h('tr', null, th('Period'), th('Read'), th('Flagged'), th('Flagged rate'), th('Reviewed'),
          th('Agreed / disagreed / uncertain'), th('Agreement'), th('PPV'), th('Mean score'), th('Drift vs previous'))),
        h('tbody', null, rows)));
  }

  // --------------------------------------------------------------- keyboard

  function typing(el) {
    if (!el) return false;
    const t = el.tagName;
    return t === 'INPUT' || t === 'TEXTAREA' || t === 'SELECT' || el.isContentEditable;
  }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !token) return;
    const el = document.activeElement;
    if (view === 'worklist') {
      if (typing(el)) return;
      if (ev.key === 'j' || ev.key === 'ArrowDown') { ev.preventDefault(); moveSelection(1); }
      else if (ev.key === 'k' || ev.key === 'ArrowUp') { ev.preventDefault(); moveSelection(-1); }
      else if (ev.key === 'Enter') {
        // Enter on another focused control (a nav button) does that control's job.
        if (el && el.tagName === 'BUTTON' && !el.classList.contains('rowopen')) return;
        if (list.selected !== null) { ev.preventDefault(); openStudy(list.selected); }
      }
    } else if (view === 'detail') {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        if (detail.dismissArmed) { disarmDismiss(); return; }
        if (typing(el)) { el.blur(); return; }
        go('#/');
        return;
      }
      if (typing(el)) return;
      const verdict = { a: 'agree', d: 'disagree', u: 'uncertain', x: 'dismiss' }[ev.key];
      if (verdict) { ev.preventDefault(); onVerdict(verdict); }
    }
  }

  // ------------------------------------------------------------------ start

  function init() {
    // A token in the address bar's fragment is taken and removed from it.
    const m = /^#token=([^&]*)/.exec(location.hash || '');
    if (m) {
      try { token = decodeURIComponent(m[1]) || null; } catch (e) { token = null; }
      history.replaceState(null, '', location.pathname + location.search);
    }
    $('signin-form').addEventListener('submit', onSignin);
    $('btn-signout').addEventListener('click', signOut);
    $('nav-worklist').addEventListener('click', () => go('#/'));
    $('nav-performance').addEventListener('click', () => go('#/performance'));
    $('btn-back').addEventListener('click', () => go('#/'));
    for (const b of document.querySelectorAll('.review-buttons button')) {
      b.addEventListener('click', () => onVerdict(b.dataset.verdict));
    }
    for (const id of ['f-status', 'f-modality', 'f-model', 'f-flagged']) {
      $(id).addEventListener('change', () => { list.selected = null; loadList(); });
    }
    $('filters').addEventListener('submit', (ev) => ev.preventDefault());
    $('perf-filters').addEventListener('submit', (ev) => ev.preventDefault());
    $('perf-window').addEventListener('change', loadPerformance);
    window.addEventListener('hashchange', route);
    document.addEventListener('keydown', onKey);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && view === 'worklist' && token) loadList();
    });
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
