// Rivet dashboard: the fleet table and the node page, kept live by the
// conductor's server-sent events. Plain modern JavaScript; every value from
// the server reaches the page through textContent or attributes, never as
// markup.
'use strict';

(() => {
  const page = document.body.dataset.page;
  const ROW_LIMIT = 500;

  // ---- small helpers -------------------------------------------------------

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'style') Object.assign(e.style, v); // CSSOM: allowed by the page's CSP
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const fmt = {
    bytes(n) {
      if (!(n > 0)) return '0 B';
      const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
      return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + u[i];
    },
    rate(bps) { return bps > 0 ? fmt.bytes(bps) + '/s' : '–'; },
    dur(s) {
      if (!(s >= 0)) return '–';
      if (s < 60) return (s < 10 ? s.toFixed(1) : s.toFixed(0)) + ' s';
      const m = Math.floor(s / 60), r = Math.round(s % 60);
      if (m < 60) return m + ' min ' + String(r).padStart(2, '0') + ' s';
      return Math.floor(m / 60) + ' h ' + String(m % 60).padStart(2, '0') + ' min';
    },
    ago(iso) {
      if (!iso) return '';
      const s = (Date.now() - Date.parse(iso)) / 1000;
      if (!(s >= 0)) return 'just now';
      if (s < 45) return 'just now';
      if (s < 3600) return Math.round(s / 60) + ' min ago';
      if (s < 86400) return Math.round(s / 3600) + ' h ago';
      return Math.round(s / 86400) + ' d ago';
    },
    time(iso) { return iso ? new Date(iso).toLocaleString() : '–'; },
  };

  function stateClass(s) {
    if (!s) return '';
    if (s === 'active' || s === 'available') return 'ok';
    if (s.includes('fail') || s === 'error') return 'bad';
    if (s === 'deploying' || s === 'wait call-back' || s === 'inspecting' || s === 'inspect wait') return 'busy';
    if (s.startsWith('clean') || s === 'verifying' || s === 'deleting' || s === 'adopting') return 'warn';
    return '';
  }

  function stateBadge(n) {
    return el('span', {},
      el('span', { class: 'badge ' + stateClass(n.provision_state), text: n.provision_state || 'none' }),
      n.maintenance ? el('span', { class: 'maint', title: n.maintenance_reason || '', text: 'maintenance' }) : null,
      n.target_provision_state ? el('span', { class: 'target', text: '→ ' + n.target_provision_state }) : null);
  }

  function powerCell(p) {
    return el('span', { class: p === 'power on' ? 'power-on' : 'power-off', text: p || '–' });
  }

  // progressBar draws a write's progress: received of total, rate, ETA.
  function progressBar(n) {
    const p = n.progress;
    const known = p.total_bytes > 0;
    const pct = known ? Math.min(100, Math.floor(100 * p.bytes_read / p.total_bytes)) : null;
    const label = 'Image write of ' + (n.name || n.uuid);
    const bar = el('div', {
      class: 'bar', role: 'progressbar', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': 100,
      'aria-valuenow': known ? pct : undefined,
      'aria-valuetext': known ? pct + '%, ' + fmt.bytes(p.bytes_read) + ' of ' + fmt.bytes(p.total_bytes) : fmt.bytes(p.bytes_read) + ' received',
    }, el('div', { class: 'fill' + (known ? '' : ' unknown'), style: known ? { width: pct + '%' } : undefined }));
    const left = known ? pct + '% · ' + fmt.bytes(p.bytes_read) + ' of ' + fmt.bytes(p.total_bytes) : fmt.bytes(p.bytes_read) + ' received';
    let right = fmt.rate(p.rate_bytes_per_sec);
    if (p.eta_seconds >= 0 && p.phase !== 'done') right += ' · ETA ' + fmt.dur(p.eta_seconds);
    if (p.phase) right = p.phase + ' · ' + right;
    return el('div', { class: 'progress' }, bar, el('div', { class: 'meta' }, el('span', { text: left }), el('span', { text: right })));
  }

  // ---- live status and the event stream -----------------------------------

  const live = document.getElementById('live');
  function setLive(state, text) {
    if (!live) return;
    live.classList.toggle('live', state === 'live');
    live.classList.toggle('down', state === 'down');
    live.querySelector('.txt').textContent = text;
  }

  function stream(url, onSnapshot, onNodes) {
    let es;
    const open = () => {
      es = new EventSource(url);
      es.addEventListener('open', () => setLive('live', 'Live'));
      es.addEventListener('snapshot', e => { setLive('live', 'Live'); onSnapshot(JSON.parse(e.data)); });
      es.addEventListener('nodes', e => onNodes(JSON.parse(e.data)));
      es.addEventListener('error', () => {
        if (es.readyState === EventSource.CLOSED) {
          // Refused (a session that ended, too many clients): try again;
          // a page load sends an expired session to the login form.
          setLive('down', 'Disconnected — retrying');
          setTimeout(() => fetch(location.href, { method: 'HEAD', redirect: 'manual' }).then(r => {
            if (r.type === 'opaqueredirect' || r.status === 401) location.reload(); else open();
          }).catch(open), 3000);
        } else {
          setLive('down', 'Reconnecting…');
        }
      });
    };
    open();
  }

  // ---- fleet page ----------------------------------------------------------

  function fleetPage() {
    const nodes = new Map();
    const rows = new Map(); // uuid → {tr, json}
    const tbody = document.querySelector('#fleet tbody');
    const countsEl = document.getElementById('counts');
    const stateSel = document.getElementById('f-state');
    const text = document.getElementById('f-text');
    const problems = document.getElementById('f-problems');
    const shown = document.getElementById('shown');

    const params = new URLSearchParams(location.search);
    const filter = { state: params.get('state') || '', q: params.get('q') || '', problems: params.get('problems') === '1' };
    text.value = filter.q;
    problems.checked = filter.problems;

    let pending = false;
    function schedule() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; render(); });
    }

    function saveFilter() {
      const p = new URLSearchParams();
      if (filter.state) p.set('state', filter.state);
      if (filter.q) p.set('q', filter.q);
      if (filter.problems) p.set('problems', '1');
      const qs = p.toString();
      history.replaceState(null, '', location.pathname + (qs ? '?' + qs : ''));
    }

    stateSel.addEventListener('change', () => { filter.state = stateSel.value; saveFilter(); render(); });
    text.addEventListener('input', () => { filter.q = text.value.trim().toLowerCase(); saveFilter(); render(); });
    problems.addEventListener('change', () => { filter.problems = problems.checked; saveFilter(); render(); });
    document.getElementById('filters').addEventListener('submit', e => e.preventDefault());

    function matches(n) {
      if (filter.state && n.provision_state !== filter.state) return false;
      if (filter.problems && !(n.maintenance || stateClass(n.provision_state) === 'bad')) return false;
      if (filter.q) {
        const hay = [n.name, n.uuid, n.driver, n.last_error, n.provision_state].join(' ').toLowerCase();
        if (!hay.includes(filter.q)) return false;
      }
      return true;
    }

    function row(n) {
      let detail;
      if (n.progress) detail = progressBar(n);
      else if (n.last_error) detail = el('span', { class: 'lasterr', title: n.last_error, text: n.last_error });
      else if (n.deploy_step) detail = el('span', { class: 'muted', text: 'step ' + n.deploy_step });
      else detail = el('span', { class: 'muted', text: '–' });
      return el('tr', { 'data-uuid': n.uuid, 'data-state': n.provision_state },
        el('td', { class: 'name' }, el('a', { href: '/dashboard/nodes/' + encodeURIComponent(n.uuid), text: n.name || n.uuid }),
          n.name ? el('span', { class: 'uuid', text: n.uuid }) : null),
        el('td', {}, stateBadge(n)),
        el('td', {}, powerCell(n.power_state)),
        el('td', { text: n.driver }),
        el('td', {}, detail),
        el('td', { class: 'when', 'data-t': n.provision_updated_at || '', title: fmt.time(n.provision_updated_at), text: fmt.ago(n.provision_updated_at) || '–' }));
    }

    function renderCounts() {
      const counts = new Map();
      for (const n of nodes.values()) counts.set(n.provision_state, (counts.get(n.provision_state) || 0) + 1);
      const states = [...counts.keys()].sort();
      countsEl.replaceChildren(
        el('li', {}, el('button', { type: 'button', 'aria-pressed': filter.state === '' ? 'true' : 'false', onclick: () => pick('') },
          el('span', { text: 'All' }), el('span', { class: 'n', text: nodes.size }))),
        ...states.map(s => el('li', {}, el('button', {
          type: 'button', 'aria-pressed': filter.state === s ? 'true' : 'false', onclick: () => pick(s),
          'aria-label': s + ': ' + counts.get(s) + ' nodes',
        }, el('span', { class: 'badge ' + stateClass(s), text: s }), el('span', { class: 'n', text: counts.get(s) })))));
      const cur = filter.state;
      stateSel.replaceChildren(el('option', { value: '', text: 'All states (' + nodes.size + ')' }),
        ...states.map(s => el('option', { value: s, text: s + ' (' + counts.get(s) + ')' })));
      if (cur && !counts.has(cur)) stateSel.append(el('option', { value: cur, text: cur + ' (0)' }));
      stateSel.value = cur;
    }
    function pick(s) { filter.state = s; stateSel.value = s; saveFilter(); render(); }

    function render() {
      const focused = document.activeElement;
      renderCounts();
      const list = [...nodes.values()].filter(matches);
      list.sort((a, b) => (a.name || '\uffff').localeCompare(b.name || '\uffff') || a.uuid.localeCompare(b.uuid));
      const visible = list.slice(0, ROW_LIMIT);
      const keep = new Set();
      visible.forEach((n, i) => {
        const json = JSON.stringify(n);
        let r = rows.get(n.uuid);
        if (!r || r.json !== json) {
          const tr = row(n);
          if (r) r.tr.replaceWith(tr);
          r = { tr, json };
          rows.set(n.uuid, r);
        }
        keep.add(n.uuid);
        if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
      });
      for (const [id, r] of rows) {
        if (!keep.has(id)) { r.tr.remove(); rows.delete(id); }
      }
      shown.textContent = list.length > ROW_LIMIT
        ? 'Showing the first ' + ROW_LIMIT + ' of ' + list.length + ' matching nodes; narrow the filter to see the rest.'
        : list.length + ' of ' + nodes.size + ' nodes shown.';
      if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus();
    }

    setInterval(() => {
      for (const td of tbody.querySelectorAll('td.when')) td.textContent = fmt.ago(td.dataset.t) || '–';
    }, 30000);

    stream('/dashboard/api/events', snap => {
      nodes.clear();
      for (const n of snap.nodes) nodes.set(n.uuid, n);
      render();
    }, ev => {
      for (const n of ev.nodes) {
        if (n.deleted) nodes.delete(n.uuid); else nodes.set(n.uuid, n);
      }
      schedule();
    });
  }

  // ---- node page -----------------------------------------------------------

  const PHASES = ['boot_to_lookup', 'download_write', 'bootloader', 'power'];
  const PHASE_LABEL = {
    boot_to_lookup: 'Ramdisk boot → lookup', download_write: 'Image download and write', bootloader: 'Boot loader',
    power: 'Power off and reboot', other: 'Between phases', total: 'Total (requested → active)',
    // The agent's decode stage of a compressed image: where its decoder,
    // the write's one serial stage, spent the write. Its CPU time is summed
    // over its threads (an xz image's blocks decode on several), so it
    // can exceed the decode phase.
    agent_decode_input_wait: 'Agent: decoder waiting for the download',
    agent_decode_output_wait: 'Agent: decoder waiting for the disks',
    agent_decode_cpu: 'Agent: decoder CPU time, summed over its threads',
  };
  const PHASE_COLOR = { boot_to_lookup: '#7a9cc6', download_write: '#2f6fd6', bootloader: '#e3a13b', power: '#5aa469', other: '#c5ccd6' };
  const phaseLabel = p => PHASE_LABEL[p] || (p.startsWith('agent_') ? 'Agent: ' + p.slice(6).replace(/_/g, ' ') : p.replace(/_/g, ' '));

  function nodePage() {
    const ident = document.body.dataset.node;
    const title = document.getElementById('node-title');
    const errBox = document.getElementById('node-error');
    let detail = null, chart = null, streaming = false, refetch = null, chosen = -1;

    function fact(label, value, cls) {
      return el('div', { class: cls }, el('dt', { text: label }), el('dd', {}, value));
    }

    function renderSummary() {
      const n = detail.node, props = detail.properties || {};
      title.textContent = n.name || n.uuid;
      document.title = (n.name || n.uuid) + ' · Rivet dashboard';
      const facts = [
        fact('Provision state', stateBadge(n)),
        fact('Power', powerCell(n.power_state)),
        fact('Driver', n.driver),
        fact('UUID', el('span', { class: 'mono', text: n.uuid })),
      ];
      if (n.deploy_step) facts.push(fact('Deploy step', n.deploy_step));
      if (n.maintenance) facts.push(fact('Maintenance', n.maintenance_reason || 'yes'));
      facts.push(fact('State changed', el('span', { title: fmt.time(n.provision_updated_at), text: fmt.ago(n.provision_updated_at) || '–' })));
      if (detail.image) facts.push(fact('Image', el('span', { class: 'mono', text: detail.image }), 'wide'));
      const hw = [];
      if (props.cpus) hw.push(props.cpus + ' CPUs');
      if (props.cpu_arch) hw.push(props.cpu_arch);
      if (props.memory_mb) hw.push(fmt.bytes(props.memory_mb * 1048576) + ' RAM');
      if (props.local_gb) hw.push(props.local_gb + ' GiB disk');
      if (hw.length) facts.push(fact('Properties', hw.join(' · '), 'wide'));
      if (n.progress) facts.push(fact('Image write', progressBar(n), 'full'));
      if (n.last_error) facts.push(fact('Last error', el('span', { class: 'lasterr', text: n.last_error }), 'full'));
      document.getElementById('summary').replaceChildren(...facts);
    }

    function deployLabel(d, i) {
      return d.finished_at ? 'Deploy ' + (i + 1) + ' · ' + fmt.time(d.finished_at) : 'Deploy ' + (i + 1) + ' (last recorded)';
    }
    function shortLabel(d, i) {
      return '#' + (i + 1) + (d.finished_at ? ' · ' + new Date(d.finished_at).toLocaleTimeString() : '');
    }

    function phasesOf(d) {
      const m = {};
      for (const p of d.phases) m[p.name] = p.seconds;
      return m;
    }

    function renderTimings() {
      const deploys = detail.deploys || [];
      const box = document.getElementById('timings');
      const controls = document.getElementById('timing-controls');
      const chartBox = document.getElementById('chart-box');
      if (!deploys.length) {
        controls.hidden = true; chartBox.hidden = true;
        box.replaceChildren(el('p', { class: 'muted', text: 'No deploy timed yet: timings appear when a deploy reaches active.' }));
        return;
      }
      if (chosen < 0 || chosen >= deploys.length) chosen = deploys.length - 1;
      const pickSel = document.getElementById('deploy-pick');
      controls.hidden = deploys.length < 2;
      pickSel.replaceChildren(...deploys.map((d, i) => el('option', { value: i, text: deployLabel(d, i) })));
      pickSel.value = String(chosen);
      pickSel.onchange = () => { chosen = Number(pickSel.value); renderTimings(); };

      // The chart: one bar per deploy, the conductor's phases stacked.
      if (window.Chart) {
        chartBox.hidden = false;
        chartBox.style.height = Math.max(9, 4 + deploys.length * 2.4) + 'rem';
        const rowsOf = deploys.map(phasesOf);
        const series = [...PHASES, 'other'];
        const data = {
          labels: deploys.map((d, i) => shortLabel(d, i)),
          datasets: series.map(p => ({
            label: phaseLabel(p), backgroundColor: PHASE_COLOR[p], borderWidth: 0,
            data: rowsOf.map(m => p === 'other'
              ? Math.max(0, (m.total || 0) - PHASES.reduce((s, q) => s + (m[q] || 0), 0))
              : (m[p] || 0)),
          })),
        };
        const last = rowsOf[rowsOf.length - 1];
        document.getElementById('timing-chart').setAttribute('aria-label', 'Deploy phases in seconds. Last deploy: ' +
          PHASES.filter(p => last[p] !== undefined).map(p => phaseLabel(p) + ' ' + fmt.dur(last[p])).join(', ') +
          (last.total !== undefined ? ', total ' + fmt.dur(last.total) : '') + '. The table below has every phase.');
        const opts = {
          indexAxis: 'y', responsive: true, maintainAspectRatio: false, animation: false,
          scales: { x: { stacked: true, title: { display: true, text: 'seconds' }, beginAtZero: true }, y: { stacked: true } },
          plugins: {
            legend: { position: 'bottom' },
            tooltip: { callbacks: { label: c => c.dataset.label + ': ' + fmt.dur(c.raw) } },
          },
        };
        if (chart) { chart.data = data; chart.update(); } else chart = new window.Chart(document.getElementById('timing-chart'), { type: 'bar', data, options: opts });
      } else {
        chartBox.hidden = true;
      }

      // The table: every phase of the chosen deploy.
      const d = deploys[chosen];
      const m = phasesOf(d);
      const total = m.total;
      box.replaceChildren(el('table', { class: 'small', id: 'timing-table' },
        el('caption', { class: 'visually-hidden', text: 'Phases of ' + deployLabel(d, chosen) }),
        el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Phase' }), el('th', { scope: 'col', class: 'num', text: 'Duration' }),
          el('th', { scope: 'col', class: 'num', text: 'Share of total' }))),
        el('tbody', {}, d.phases.map(p => el('tr', { class: p.name.startsWith('agent_') ? 'sub' : (p.name === 'total' ? 'total' : '') },
          el('th', { scope: 'row', text: p.name.startsWith('agent_') ? '↳ ' + phaseLabel(p.name) + ' (part of the write)' : phaseLabel(p.name) }),
          el('td', { class: 'num', text: fmt.dur(p.seconds) }),
          el('td', { class: 'num', text: total > 0 && p.name !== 'total' ? Math.round(100 * p.seconds / total) + '%' : '' }))))));
    }

    function renderHistory() {
      document.getElementById('hist-note').textContent = detail.history_source === 'feed'
        ? 'State changes this conductor has seen since it started, newest first.'
        : 'Newest first.';
      const h = [...detail.history].reverse();
      if (!h.length) {
        document.getElementById('history').replaceChildren(el('p', { class: 'muted', text: 'No changes seen yet.' }));
        return;
      }
      document.getElementById('history').replaceChildren(el('table', { class: 'small', id: 'history-table' },
        el('caption', { class: 'visually-hidden', text: 'Node history' }),
        el('thead', {}, el('tr', {}, ['Time', 'Type', 'Event'].map(t => el('th', { scope: 'col', text: t })))),
        el('tbody', {}, h.map(e => el('tr', { class: 'sev-' + e.severity },
          el('td', { class: 'when', title: fmt.time(e.created_at), text: new Date(e.created_at).toLocaleTimeString() }),
          el('td', { text: e.event_type }),
          el('td', {}, e.severity === 'ERROR' ? el('span', { class: 'visually-hidden', text: 'Error: ' }) : null, e.event,
            e.user ? el('span', { class: 'muted', text: ' — ' + e.user }) : null))))));
    }

    function renderPorts() {
      const ports = detail.ports || [];
      document.getElementById('ports').replaceChildren(ports.length
        ? el('table', { class: 'small' },
          el('caption', { class: 'visually-hidden', text: 'Ports' }),
          el('thead', {}, el('tr', {}, ['MAC address', 'PXE', 'Physical network'].map(t => el('th', { scope: 'col', text: t })))),
          el('tbody', {}, ports.map(p => el('tr', {}, el('td', { class: 'mono', text: p.address }),
            el('td', { text: p.pxe_enabled ? 'yes' : 'no' }), el('td', { text: p.physical_network || '–' })))))
        : el('p', { class: 'muted', text: 'No ports.' }));
    }

    function renderInventory() {
      const inv = detail.inventory;
      const box = document.getElementById('inventory');
      if (!inv) {
        box.replaceChildren(el('p', { class: 'muted', text: 'No inspection inventory: inspect the node to collect one.' }));
        return;
      }
      const facts = [];
      const sv = inv.system_vendor || {};
      if (sv.manufacturer || sv.product_name) facts.push(fact('System', [sv.manufacturer, sv.product_name].filter(Boolean).join(' ') + (sv.serial_number ? ' · S/N ' + sv.serial_number : '')));
      const cpu = inv.cpu || {};
      if (cpu.model_name || cpu.count) facts.push(fact('CPU', [cpu.count ? cpu.count + ' ×' : '', cpu.model_name, cpu.architecture].filter(Boolean).join(' ')));
      const mem = inv.memory || {};
      if (mem.physical_mb || mem.total) facts.push(fact('Memory', mem.physical_mb ? fmt.bytes(mem.physical_mb * 1048576) : fmt.bytes(mem.total)));
      if (inv.boot && inv.boot.current_boot_mode) facts.push(fact('Boot mode', inv.boot.current_boot_mode));
      if (inv.bmc_address) facts.push(fact('BMC', inv.bmc_address));
      const parts = [el('dl', { class: 'facts' }, facts)];
      if ((inv.disks || []).length) {
        parts.push(el('h3', { text: 'Disks' }), el('table', { class: 'small' },
          el('thead', {}, el('tr', {}, ['Device', 'Model', 'Size', 'Type', 'Serial'].map(t => el('th', { scope: 'col', text: t })))),
          el('tbody', {}, inv.disks.map(d => el('tr', {}, el('td', { class: 'mono', text: d.name || '' }),
            el('td', { text: [d.vendor, d.model].filter(Boolean).join(' ') || '–' }), el('td', { class: 'num', text: d.size ? fmt.bytes(d.size) : '–' }),
            el('td', { text: d.rotational === undefined ? '–' : (d.rotational ? 'HDD' : 'SSD') }), el('td', { class: 'mono', text: d.serial || '–' }))))));
      }
      if ((inv.interfaces || []).length) {
        parts.push(el('h3', { text: 'Network interfaces' }), el('table', { class: 'small' },
          el('thead', {}, el('tr', {}, ['Name', 'MAC address', 'IPv4', 'Speed'].map(t => el('th', { scope: 'col', text: t })))),
          el('tbody', {}, inv.interfaces.map(i => el('tr', {}, el('td', { text: i.name || '' }), el('td', { class: 'mono', text: i.mac_address || '' }),
            el('td', { text: i.ipv4_address || '–' }), el('td', { text: i.speed_mbps ? i.speed_mbps + ' Mb/s' : '–' }))))));
      }
      box.replaceChildren(...parts);
    }

    function renderAll() {
      renderSummary(); renderTimings(); renderHistory(); renderPorts(); renderInventory();
    }

    async function load() {
      try {
        const r = await fetch('/dashboard/api/nodes/' + encodeURIComponent(ident), { headers: { Accept: 'application/json' } });
        if (r.status === 401) { location.reload(); return; }
        const body = await r.json();
        if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
        errBox.hidden = true;
        detail = body;
        renderAll();
        if (!streaming) {
          streaming = true;
          stream('/dashboard/api/events?node=' + encodeURIComponent(detail.node.uuid), snap => {
            if (snap.nodes.length) update(snap.nodes[0]);
          }, ev => ev.nodes.forEach(update));
        }
      } catch (e) {
        errBox.textContent = 'Could not load the node: ' + e.message;
        errBox.hidden = false;
      }
    }

    // update takes a live summary; a move to another state or the end of
    // a write reloads the history and timings.
    function update(n) {
      if (n.deleted) {
        errBox.textContent = 'This node was deleted.';
        errBox.hidden = false;
        return;
      }
      const old = detail.node;
      detail.node = n;
      renderSummary();
      if (old.provision_state !== n.provision_state || old.power_state !== n.power_state || old.maintenance !== n.maintenance) {
        clearTimeout(refetch);
        refetch = setTimeout(load, 300);
      }
    }

    load();
  }

  if (page === 'fleet') fleetPage();
  else if (page === 'node') nodePage();
})();
