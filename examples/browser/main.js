// Browser demo: one converted graph model on 'stof' and on 'webgpu'; times, agreement, fusion plan.
// Query parameters: model (URL of model.json), batch, seq, runs, warmup, seed, timeout (s).
// When done (or failed) it sets window.demoResult = {stofMs, webgpuMs, maxDiff, groups, dispatches, backendInfo, error?}.
(function () {
  'use strict';
  const params = new URLSearchParams(location.search);
  const num = (name, dflt) => (params.has(name) ? Number(params.get(name)) : dflt);
  const cfg = {
    model: params.get('model') || '/tmp/browser-demo/bert_tiny/model.json',
    batch: num('batch', 2), seq: num('seq', 16), runs: num('runs', 10), warmup: num('warmup', 2),
    seed: num('seed', 7), timeout: num('timeout', 110),
  };
  const COLORS = {stof: '#e4572e', webgpu: '#4c78a8'};
  const TEMPLATE_COLORS = {gemm: '#6f42c1', attention: '#e4572e', row: '#1b7f8c', elementwise: '#9a6700', alias: '#8c959f'};
  const $ = id => document.getElementById(id);
  let step = 'loading the scripts';
  let finished = false;
  const partial = {};  // what is known so far, reported with an error
  let inputs = null;

  function setStatus(text, cls) { const s = $('status'); s.textContent = text; s.className = cls; }
  function progress(text) { step = text; setStatus(`${text}…`, 'run'); }

  function finish(result) {
    if (finished) return;
    finished = true;
    window.demoResult = result;
    if (result.error) setStatus(`Error while ${result.error}`, 'err');
  }
  function fail(e) {
    const message = e && e.message ? e.message : String(e);
    console.error(e);
    finish({...partial, error: `${step}: ${message}`});
  }
  window.addEventListener('error', ev => fail(ev.error || ev.message));
  window.addEventListener('unhandledrejection', ev => fail(ev.reason));
  setTimeout(() => fail(new Error(`no result after ${cfg.timeout} s`)), cfg.timeout * 1000);

  // ---------------------------------------------------------------------------------------------
  // Inputs: seeded token ids, right-padded rows of different lengths, sentence-pair type ids.

  function makeRng(seed) {
    let s = (Math.imul(seed >>> 0, 2654435761) + 12345) >>> 0;
    return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
  }

  function makeInputs(vocab) {
    const {batch, seq} = cfg;
    const rng = makeRng(cfg.seed);
    // Row 0 is full; the others are padded, each to a different length when seq allows.
    const lengths = [seq];
    for (let b = 1; b < batch; b++) {
      let len;
      do len = Math.max(1, Math.ceil(seq / 4) + Math.floor(rng() * (seq - Math.ceil(seq / 4))));
      while (lengths.includes(len) && lengths.length < seq);
      lengths.push(len);
    }
    const ids = new Int32Array(batch * seq), mask = new Int32Array(batch * seq), types = new Int32Array(batch * seq);
    lengths.forEach((len, b) => {
      const second = 1 + Math.floor(rng() * len);
      for (let s = 0; s < len; s++) {
        ids[b * seq + s] = 1 + Math.floor(rng() * (vocab - 1));
        mask[b * seq + s] = 1;
        types[b * seq + s] = s >= second ? 1 : 0;
      }
    });
    return {lengths, values: {input_ids: ids, attention_mask: mask, token_type_ids: types}};
  }

  function vocabOf(model) {
    for (const [name, tensors] of Object.entries(model.weights)) {
      if (/(word_embeddings|wte)\/(weight|embeddings)$/.test(name)) return tensors[0].shape[0];
    }
    return 100;
  }

  // ---------------------------------------------------------------------------------------------
  // One backend: load the model there (its weights live on that backend), time the forwards.

  const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

  async function measure(backend, runs = cfg.runs, warmup = cfg.warmup) {
    progress(`initializing '${backend}'`);
    if (!await tf.setBackend(backend)) throw new Error(`tf.setBackend('${backend}') returned false`);
    progress(`loading the model on '${backend}'`);
    const model = await tf.loadGraphModel(cfg.model);
    inputs = inputs ?? makeInputs(vocabOf(model));
    const shape = [cfg.batch, cfg.seq];
    const feeds = {};
    for (const input of model.inputs) {
      const values = inputs.values[input.name];
      if (values == null) throw new Error(`the model has an input '${input.name}' this demo does not know how to feed`);
      feeds[input.name] = tf.tensor2d(values, shape, 'int32');
    }
    const forward = () => {
      const out = model.execute(feeds);
      return Array.isArray(out) ? out[0] : out;
    };
    try {
      progress(`warming up on '${backend}' (shader compiles)`);
      for (let i = 0; i < warmup; i++) { const y = forward(); await y.data(); y.dispose(); }
      const times = [];
      let values = null, outShape = null;
      for (let i = 0; i < runs; i++) {
        progress(`forward ${i + 1}/${runs} on '${backend}'`);
        const start = performance.now();
        const y = forward();
        const data = await y.data();  // includes the readback, as an app's forward does
        times.push(performance.now() - start);
        values = data;
        outShape = y.shape;
        y.dispose();
      }
      let report = null, plan = '', kernels = null;
      if (backend === 'stof') {
        progress(`profiling one forward on 'stof'`);
        report = await tf.stof.profile(forward);
        tf.dispose(report.result);
        plan = tf.stof.explain(false);
      } else if (backend === 'webgpu') {
        progress(`counting the kernels of one forward on 'webgpu'`);
        const p = await tf.profile(async () => { const y = forward(); await y.data(); return y; });
        tf.dispose(p.result);
        kernels = p.kernels.length;
      }
      return {times, ms: median(times), values, outShape, report, plan, kernels};
    } finally {
      tf.dispose(feeds);
      model.dispose();
    }
  }

  function difference(a, b) {
    if (a.length !== b.length) throw new Error(`outputs differ in size: ${a.length} vs ${b.length}`);
    let abs = 0, rel = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      if (!(d <= abs)) abs = d;  // NaN propagates
      const r = d / Math.max(1, Math.abs(b[i]));
      if (!(r <= rel)) rel = r;
    }
    return {abs, rel};
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering: plain DOM and inline SVG.

  const SVG = 'http://www.w3.org/2000/svg';
  function el(tag, attrs = {}, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  /** Axis ticks for 0..x: a round step (1, 2, 2.5 or 5 times a power of 10), 3 to 5 of them. */
  function axis(x) {
    const raw = (x || 1) / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * p).find(v => v >= raw);
    const n = Math.ceil((x || 1) / step - 1e-9);
    return {max: n * step, ticks: Array.from({length: n + 1}, (_, i) => i * step)};
  }
  const tick = v => String(Number(v.toPrecision(3)));
  const fmt = ms => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

  function medianChart(rows) {
    const W = 940, barH = 26, left = 80, right = 80, top = 6;
    const H = top + rows.length * (barH + 12) + 22;
    const {max, ticks} = axis(Math.max(...rows.map(r => r.ms)));
    const x = v => left + (W - left - right) * v / max;
    const svg = el('svg', {width: '100%', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'median ms per forward'});
    for (const v of ticks) {
      const gx = x(v);
      svg.append(el('line', {x1: gx, x2: gx, y1: top, y2: H - 20, class: 'grid'}));
      svg.append(el('text', {x: gx, y: H - 5, 'text-anchor': 'middle', fill: '#5f6b7a'}, `${tick(v)} ms`));
    }
    rows.forEach((r, i) => {
      const y = top + i * (barH + 12);
      svg.append(el('text', {x: left - 10, y: y + barH / 2 + 4, 'text-anchor': 'end', 'font-weight': 600}, r.name));
      svg.append(el('rect', {x: left, y, width: Math.max(1, x(r.ms) - left), height: barH, rx: 3, fill: COLORS[r.name]}));
      svg.append(el('text', {x: x(r.ms) + 8, y: y + barH / 2 + 4}, `${fmt(r.ms)} ms`));
    });
    svg.append(el('line', {x1: left, x2: left, y1: top, y2: H - 20, class: 'axis'}));
    return svg;
  }

  function runsChart(series) {
    const W = 940, H = 180, left = 50, right = 10, top = 10, bottom = 24;
    const n = Math.max(...series.map(s => s.times.length));
    const {max, ticks} = axis(Math.max(...series.flatMap(s => s.times)));
    const y = v => top + (H - top - bottom) * (1 - v / max);
    const slot = (W - left - right) / n, bw = Math.min(22, slot * 0.8 / series.length);
    const svg = el('svg', {width: '100%', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'ms of each timed forward'});
    for (const v of ticks) {
      svg.append(el('line', {x1: left, x2: W - right, y1: y(v), y2: y(v), class: 'grid'}));
      svg.append(el('text', {x: left - 6, y: y(v) + 4, 'text-anchor': 'end', fill: '#5f6b7a'}, tick(v)));
    }
    for (let i = 0; i < n; i++) {
      const cx = left + slot * (i + 0.5);
      series.forEach((s, j) => {
        const v = s.times[i];
        if (v == null) return;
        const bx = cx - bw * series.length / 2 + j * bw;
        const bar = el('rect', {x: bx + 1, y: y(v), width: bw - 2, height: y(0) - y(v), rx: 2, fill: COLORS[s.name]});
        bar.append(el('title', {}, `${s.name} #${i + 1}: ${fmt(v)} ms`));
        svg.append(bar);
      });
      svg.append(el('text', {x: cx, y: H - 7, 'text-anchor': 'middle', fill: '#5f6b7a'}, String(i + 1)));
    }
    svg.append(el('line', {x1: left, x2: W - right, y1: y(0), y2: y(0), class: 'axis'}));
    return svg;
  }

  function setRows(table, head, rows) {
    table.innerHTML = '';
    const tr = document.createElement('tr');
    head.forEach(h => { const th = document.createElement('th'); th.textContent = h; tr.append(th); });
    table.append(tr);
    for (const row of rows) {
      const r = document.createElement('tr');
      row.forEach(c => {
        const td = document.createElement('td');
        if (c instanceof Node) td.append(c);
        else { td.textContent = String(c); if (typeof c === 'number' || /^[\d.]+( ms|x)?$/.test(String(c))) td.className = 'num'; }
        r.append(td);
      });
      table.append(r);
    }
  }
  function swatch(name) {
    const span = document.createElement('span');
    span.innerHTML = `<span class="swatch" style="background:${COLORS[name]}"></span>${name}`;
    return span;
  }
  function tag(template) {
    const span = document.createElement('span');
    span.className = 'tag';
    span.style.background = TEMPLATE_COLORS[template] || '#57606a';
    span.textContent = template;
    return span;
  }

  function renderSetup(info) {
    const dl = $('setup');
    const add = (k, v) => { const dt = document.createElement('dt'), dd = document.createElement('dd'); dt.textContent = k; dd.textContent = v; dl.append(dt, dd); };
    dl.innerHTML = '';
    add('model', cfg.model);
    add('inputs', `batch ${cfg.batch}, seq ${cfg.seq}; valid lengths ${inputs ? inputs.lengths.join(', ') : '?'} (padding mask)`);
    add('runs', `${cfg.runs} timed after ${cfg.warmup} warm-up, each with its readback; 'cpu' once, as a reference`);
    add('stof base', info.base);
    if (info.adapter) add('adapter', Object.values(info.adapter).filter(Boolean).join(' · '));
    add('tfjs', `${tf.version_core || (tf.version && tf.version['tfjs-core']) || '?'}; stof ${tf.stof.version || '?'}`);
  }

  function renderPlan(report, plan, webgpuKernels) {
    const byTemplate = {};
    for (const g of report.groups) {
      const t = byTemplate[g.template] || (byTemplate[g.template] = {launches: 0, ops: 0, chains: {}});
      t.launches++;
      t.ops += g.ops.length;
      const chain = g.ops.join(' ');
      t.chains[chain] = (t.chains[chain] || 0) + 1;
    }
    const fused = report.groups.reduce((n, g) => n + g.ops.length, 0);
    const count = list => Object.entries(list.reduce((m, x) => ((m[x] = (m[x] || 0) + 1), m), {}))
        .sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ×${n}`).join(', ');
    const baseList = Object.entries(report.baseKernels || {}).flatMap(([k, n]) => Array(n).fill(k));
    $('plan-summary').innerHTML = '';
    const line = (label, text) => { const d = document.createElement('div'); d.innerHTML = `<b>${label}</b> `; d.append(text); $('plan-summary').append(d); };
    line(`${report.dispatches} launches per forward:`, `${report.groups.length} fused kernels covering ${fused} recorded ops; ` +
         `the other ${report.dispatches - report.groups.length} are programs of base kernels. ` +
         `${report.plansMade} plan(s) made in this forward (0: all from the plan cache). ` +
         (webgpuKernels != null ? `On webgpu the same forward runs ${webgpuKernels} kernels (tf.profile).` : ''));
    line('Base kernels (not recorded):', count(baseList) || 'none');
    line('Fallbacks:', count(report.fallbacks.map(f => `${f.kernel} (${f.reason})`)) || 'none');
    const rows = Object.entries(byTemplate).sort((a, b) => b[1].launches - a[1].launches).map(([name, t]) => {
      const chains = Object.entries(t.chains).sort((a, b) => b[1] - a[1]).slice(0, 3)
          .map(([c, n]) => `${n}× ${c}`).join('\n');
      const ops = document.createElement('span'); ops.className = 'ops'; ops.style.whiteSpace = 'pre-wrap'; ops.textContent = chains;
      return [tag(name), t.launches, t.ops, ops];
    });
    setRows($('plan-templates'), ['template', 'launches', 'ops fused', 'most frequent op chains'], rows);
    const list = $('plan-list');
    list.innerHTML = '';
    report.groups.forEach((g, i) => {
      const li = document.createElement('li');
      const ops = document.createElement('span'); ops.className = 'ops';
      ops.textContent = ` ${String(i + 1).padStart(2)}. ${g.ops.join(' ')}`;
      li.append(tag(g.template), ops);
      list.append(li);
    });
    $('explain').textContent = plan;
  }

  // ---------------------------------------------------------------------------------------------

  async function main() {
    if (typeof tf === 'undefined' || typeof tf.loadGraphModel !== 'function' || tf.stof == null) {
      throw new Error('tf, tf.loadGraphModel or tf.stof is missing: serve the repository root and build dist/ first');
    }
    progress(`initializing 'stof'`);
    if (!await tf.setBackend('stof')) throw new Error(`tf.setBackend('stof') returned false`);
    const info = tf.stof.backendInfo();
    partial.backendInfo = info;
    const onStof = await measure('stof');
    partial.stofMs = onStof.ms;
    partial.groups = onStof.report.groups.map(g => ({template: g.template, ops: g.ops}));
    partial.dispatches = onStof.report.dispatches;
    renderSetup(info);
    const onWebgpu = await measure('webgpu');
    partial.webgpuMs = onWebgpu.ms;
    // tfjs-backend-cpu as an independent reference (one forward; the model loaded there too).
    const onCpu = await measure('cpu', 1, 0);
    const diff = difference(onStof.values, onWebgpu.values), vsCpu = difference(onStof.values, onCpu.values);
    const finite = onStof.values.every(Number.isFinite) && onStof.values.some(v => v !== 0);

    setRows($('times'), ['backend', 'median', 'mean', 'min'], [onStof, onWebgpu].map((r, i) => [
      swatch(i ? 'webgpu' : 'stof'), `${fmt(r.ms)} ms`, `${fmt(r.times.reduce((a, b) => a + b, 0) / r.times.length)} ms`,
      `${fmt(Math.min(...r.times))} ms`]));
    const verdict = d => (d.rel <= 1e-4 ? '<span class="pass">agree within 1e-4</span>' : '<span class="fail">DIFFER</span>');
    $('agree').innerHTML = `Speed-up of stof over webgpu here: <b>${(onWebgpu.ms / onStof.ms).toFixed(2)}×</b>.<br>` +
        `Output [${onStof.outShape}]${finite ? '' : ' <span class="fail">(not finite, or all zeros)</span>'}:<br>` +
        `max |stof − webgpu| = ${diff.abs.toExponential(2)}, relative ${diff.rel.toExponential(2)}: ${verdict(diff)}<br>` +
        `max |stof − cpu| = ${vsCpu.abs.toExponential(2)}, relative ${vsCpu.rel.toExponential(2)}: ${verdict(vsCpu)}`;
    $('chart-median').append(medianChart([{name: 'stof', ms: onStof.ms}, {name: 'webgpu', ms: onWebgpu.ms}]));
    $('chart-runs').append(runsChart([{name: 'stof', times: onStof.times}, {name: 'webgpu', times: onWebgpu.times}]));
    const adapter = JSON.stringify(info.adapter || {});
    $('device-note').textContent = /swiftshader|llvmpipe|lavapipe/i.test(adapter) ?
        'Software WebGPU adapter (SwiftShader): these times say nothing about GPU speed.' : '';
    renderPlan(onStof.report, onStof.plan, onWebgpu.kernels);
    setStatus(`Done: ${cfg.runs} forwards on each backend; stof ${fmt(onStof.ms)} ms, webgpu ${fmt(onWebgpu.ms)} ms per forward.`, 'ok');
    finish({stofMs: onStof.ms, webgpuMs: onWebgpu.ms, maxDiff: diff.rel, maxAbsDiff: diff.abs, maxDiffCpu: vsCpu.rel, finite,
            stofTimes: onStof.times, webgpuTimes: onWebgpu.times, groups: partial.groups, dispatches: partial.dispatches,
            fallbacks: onStof.report.fallbacks, webgpuKernels: onWebgpu.kernels, backendInfo: info, outputShape: onStof.outShape, lengths: inputs.lengths});
  }

  main().catch(fail);
})();
