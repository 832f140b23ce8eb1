// The dashboard's page: asks /api/<view> every refresh, draws it, and shows how old the data is.
// Everything from the server goes into the page as text (textContent), never as HTML.
"use strict";
(function () {
  const body = document.body;
  const VIEW = body.dataset.view;
  const LIVE = body.dataset.kind === "live";
  const REFRESH_MS = Number(body.dataset.refreshMs) || 5000;
  const STALE_AFTER = Number(body.dataset.staleAfter) || 120;
  let fetchedAt = null;   // when the last answer arrived (ms)
  let ageAtFetch = null;  // its data's age then (s), null for a finished run

  // ---- helpers -------------------------------------------------------------------------------------
  const $ = (sel) => document.querySelector(sel);
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  const num = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toLocaleString(undefined, {minimumFractionDigits: d, maximumFractionDigits: d}));
  const pct = (v, d = 2) => (v === null || v === undefined ? "–" : (100 * v).toFixed(d) + "%");
  const money = (v) => num(v, 2);
  const signed = (v) => (v === null || v === undefined ? "" : v >= 0 ? "pos" : "neg");
  const fmt = {pct, num, money, x: (v) => (v === null || v === undefined ? "–" : num(v, 2) + "x"), int: (v) => num(v, 0)};
  function fillTable(sel, rows, cells, rowClass) {
    const tbody = $(sel + " tbody");
    tbody.replaceChildren();
    for (const row of rows) {
      const tr = el("tr");
      if (rowClass) tr.className = rowClass(row) || "";
      for (const cell of cells(row)) {
        const td = el("td");
        if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? "–" : cell;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }
  function cards(sel, items) {
    const box = $(sel);
    box.replaceChildren();
    for (const [label, value, cls, id] of items) {
      const card = el("div", null, "card");
      if (id) card.id = id;
      card.appendChild(el("div", label, "label"));
      card.appendChild(el("div", value, "value " + (cls || "")));
      box.appendChild(card);
    }
  }
  function plot(id, traces, layout) {
    if (!window.Plotly) return;
    Plotly.react(id, traces, Object.assign({margin: {t: 30, r: 20, b: 40, l: 60}, legend: {orientation: "h"}}, layout),
                 {displaylogo: false, responsive: true});
  }
  function query(form) {
    const params = new URLSearchParams();
    if (form) for (const [k, v] of new FormData(form)) if (v) params.set(k, v);
    return params.toString();
  }

  // ---- age and staleness -----------------------------------------------------------------------------
  function showAge() {
    const age = $("#age"), badge = $("#stale-badge"), panel = $("#panel");
    if (!LIVE) { age.textContent = "finished run"; return; }
    if (fetchedAt === null || ageAtFetch === null) { age.textContent = "no data yet"; return; }
    const seconds = ageAtFetch + (Date.now() - fetchedAt) / 1000;
    age.textContent = "data " + (seconds < 90 ? seconds.toFixed(0) + " s" : (seconds / 60).toFixed(1) + " min") + " old";
    const stale = seconds > STALE_AFTER;
    badge.hidden = !stale;
    badge.textContent = stale ? "STALE: no new data for " + (seconds / 60).toFixed(1) + " min" : "STALE";
    panel.classList.toggle("stale", stale);
    body.dataset.stale = stale ? "yes" : "no";
  }

  // ---- views -------------------------------------------------------------------------------------------
  const render = {
    overview(d) {
      const c = d.cards;
      const items = [["equity", money(c.equity)], ["cash", money(c.cash)]];
      if ("todays_pnl" in c) items.push(["today's P&L", money(c.todays_pnl), signed(c.todays_pnl)]);
      items.push(["unrealised P&L", money(c.unrealised_pnl), signed(c.unrealised_pnl)],
                 ["total return", pct(c.total_return), signed(c.total_return)], ["max drawdown", pct(c.max_drawdown)],
                 ["exposure", pct(c.exposure)], ["win rate", pct(c.win_rate)], ["closed trades", fmt.int(c.n_trades)]);
      if ("buy_and_hold_return" in c) items.push(["buy-and-hold return", pct(c.buy_and_hold_return), signed(c.buy_and_hold_return)]);
      cards("#cards", items);
      $("#state-reason").textContent = d.state_reason || "";
      $("#too-short").textContent = [d.too_short, d.benchmark_note].filter(Boolean).join(" ");
      const e = d.equity_curve;
      const traces = [{x: e.t, y: e.equity, name: "equity (marked to the last bar)", type: "scatter", mode: "lines"}];
      if (e.benchmark && e.benchmark.length) traces.push({x: e.t, y: e.benchmark, name: "buy and hold, equal weight", type: "scatter", mode: "lines", line: {dash: "dot"}});
      traces.push({x: e.t, y: e.drawdown.map((v) => (v === null ? null : -v)), name: "drawdown", yaxis: "y2", type: "scatter", fill: "tozeroy", line: {width: 0.5}});
      plot("equity-chart", traces, {xaxis: {anchor: "y2"}, yaxis: {title: "equity", domain: [0.3, 1]},
                                    yaxis2: {title: "drawdown", domain: [0, 0.25], tickformat: ".0%"}});
      fillTable("#targets-table", d.targets, (t) => [t.label, t.how + " " + fmt[t.kind === "money" ? "money" : t.kind](t.target),
        fmt[t.kind === "money" ? "money" : t.kind](t.achieved), el("span", t.met === null ? "not measurable yet" : t.met ? "met" : "not met", t.met === null ? "" : t.met ? "met" : "miss")]);
    },
    positions(d) {
      $("#positions-note").textContent = (d.at ? "after the bar of " + d.at + ". " : "") + (d.note || "") +
        (d.mismatches ? " " + d.mismatches + " MISMATCH(ES)" : "");
      fillTable("#positions-table", d.positions, (p) => {
        const both = p.broker_size === null || p.broker_size === undefined ? "–" :
          num(p.broker_size, 0) + " / " + num(p.journal_size, 0);
        const cell = el("span", both + (p.mismatch ? " MISMATCH" : ""), p.mismatch ? "badge error" : "");
        return [p.symbol, num(p.size, 0), money(p.entry), money(p.last), el("span", money(p.unrealised_pnl), signed(p.unrealised_pnl)),
          p.stop === null ? "–" : money(p.stop) + (p.trailing ? " (trailing)" : ""), money(p.target), num(p.confidence_entry, 3),
          num(p.confidence_now, 3), fmt.int(p.bars_held), p.sector || "–", cell];
      }, (p) => (p.mismatch ? "mismatch" : ""));
    },
    orders(d) {
      $("#orders-summary").textContent = d.total + " orders (" + d.rejected + " rejected); newest first, " + d.orders.length + " shown";
      fillTable("#orders-table", d.orders, (o) => [o.created, o.symbol, o.side, num(o.qty, 0), o.type, o.reason, o.status,
        money(o.fill_price), money(o.decision_price), num(o.slippage_bps, 1),
        o.history.map((h) => h.status + " " + (h.at || "").slice(11, 19)).join(" → "), o.status_reason || ""],
        (o) => (o.status === "rejected" ? "mismatch" : ""));
    },
    risk(d) {
      const g = d.gates;
      cards("#gates", [
        ["daily loss used", pct(g.daily_loss) + " of " + pct(g.daily_loss_limit, 1), g.daily_loss_limit_reached ? "neg" : ""],
        ["drawdown", pct(g.drawdown) + " of " + pct(g.kill_switch_limit, 1) + " (kill switch)", g.kill_switch_tripped ? "neg" : ""],
        ["kill switch", g.kill_switch_tripped === null || g.kill_switch_tripped === undefined ? "–" : g.kill_switch_tripped ? "TRIPPED" : "armed", g.kill_switch_tripped ? "neg" : "pos"],
        ["risk score (last entries)", num(d.risk_score, 2)],
        ["VaR " + pct(d.var.confidence, 0) + " (" + d.var.bars + " bars)", pct(d.var.value) + " (limit " + pct(d.var.limit, 0) + ")"],
      ]);
      fillTable("#sectors-table", d.sectors, (s) => [s.sector, pct(s.weight)]);
      const dl = $("#risk-figures");
      dl.replaceChildren();
      const c = d.correlation;
      for (const [k, v] of [["mean pairwise correlation of the holdings", num(c.mean, 2) + " over " + c.bars + " bars"],
                            ["most correlated pair", c.pair ? c.pair[0] + " / " + c.pair[1] + ": " + num(c.pair[2], 2) : "–"],
                            ["largest sector allowed", pct(d.max_sector_weight, 0)]]) {
        dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v));
      }
      const comp = $("#risk-components");
      comp.replaceChildren();
      for (const [k, v] of Object.entries(d.risk_components || {})) { comp.appendChild(el("dt", k)); comp.appendChild(el("dd", num(v, 3))); }
      if (!d.risk_components) comp.appendChild(el("dd", "the strategy reports none"));
    },
    models(d) {
      cards("#model-cards", [["model", d.model_id || "none"], ["trained", d.trained_at || (d.training_window ? d.training_window.join(" → ") : "–")],
        ["age", d.age_days === null || d.age_days === undefined ? "–" : num(d.age_days, 1) + " days"],
        ["next retrain", d.next_retrain || (d.retrains !== undefined ? d.retrains + " retrains in the run" : "–")],
        ["calibration error (ECE)", num(d.calibration_error, 3)],
        ["out-of-sample accuracy", d.out_of_sample ? pct(d.out_of_sample.directional_accuracy) : "–"]]);
      $("#model-note").textContent = d.note || (d.predictions_at ? "predictions of the bar of " + d.predictions_at : "");
      const h = d.confidence;
      plot("confidence-chart", [{x: h.edges.slice(0, -1).map((e, i) => (e + h.edges[i + 1]) / 2), y: h.counts, type: "bar", name: "confidence"}],
           {title: {text: "confidence (" + h.n + ")"}, xaxis: {range: [0, 1]}});
      fillTable("#drift-table", d.drift || [], (f) => [f.feature, el("span", num(f.psi, 3), f.psi > d.drift_threshold ? "neg" : "")]);
      const rows = d.predictions || d.folds || [];
      const head = $("#model-table thead");
      head.replaceChildren();
      const keys = rows.length ? Object.keys(rows[0]) : [];
      const tr = el("tr");
      for (const k of keys) tr.appendChild(el("th", k));
      head.appendChild(tr);
      fillTable("#model-table", rows, (r) => keys.map((k) => (typeof r[k] === "number" ? num(r[k], Number.isInteger(r[k]) ? 0 : 4) : r[k])));
    },
    chart(d) {
      $("#chart-note").textContent = d.note || "";
      if (!d.candles) return;
      const c = d.candles;
      const traces = [{x: c.t, open: c.open, high: c.high, low: c.low, close: c.close, type: "candlestick", name: d.symbol}];
      for (const t of d.trades || []) {
        traces.push({x: [t.entry_datetime], y: [t.entry_price], mode: "markers", marker: {symbol: "triangle-up", size: 11, color: "#19692c"}, name: "entry", showlegend: false});
        if (t.exit_datetime) traces.push({x: [t.exit_datetime], y: [t.exit_price], mode: "markers", marker: {symbol: "triangle-down", size: 11, color: "#a61b1b"}, name: "exit " + t.exit_reason, showlegend: false});
      }
      for (const f of d.fills || []) traces.push({x: [f.t], y: [f.price], mode: "markers", marker: {symbol: f.side === "buy" ? "triangle-up" : "triangle-down", size: 11, color: f.side === "buy" ? "#19692c" : "#a61b1b"}, name: f.side, showlegend: false});
      if (d.stops && d.stops.t.length) traces.push({x: d.stops.t, y: d.stops.stop, mode: "markers", marker: {size: 4, color: "#a61b1b"}, name: "stop"});
      const levels = d.levels || [];
      if (levels.length) {
        traces.push({x: levels.map((l) => l.t), y: levels.map((l) => l.stop), mode: "markers", marker: {size: 6, color: "#a61b1b", symbol: "line-ew-open"}, name: "stop"});
        traces.push({x: levels.map((l) => l.t), y: levels.map((l) => l.target), mode: "markers", marker: {size: 6, color: "#19692c", symbol: "line-ew-open"}, name: "target"});
      }
      plot("symbol-chart", traces, {xaxis: {rangeslider: {visible: false}}, title: {text: d.symbol}});
    },
    logs(d) {
      $("#logs-note").textContent = d.note || d.lines.length + " lines";
      $("#log-lines").textContent = d.lines.join("\n");
    },
  };

  const forms = {orders: "#orders-filter", chart: "#chart-form", logs: "#logs-form"};

  async function getJSON(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!response.ok) throw new Error(url + ": " + response.status + " " + (await response.text()).slice(0, 200));
    return response.json();
  }

  async function refresh() {
    const error = $("#fetch-error");
    try {
      const q = query(forms[VIEW] ? $(forms[VIEW]) : null);
      const data = await getJSON("/api/" + VIEW + (q ? "?" + q : ""));
      render[VIEW](data);
      fetchedAt = Date.now();
      if (data.equity_curve && data.equity_curve.t.length) body.dataset.lastBar = data.equity_curve.t[data.equity_curve.t.length - 1];
      ageAtFetch = data.age_seconds === undefined ? null : data.age_seconds;
      if (VIEW === "overview") {
        const state = $("#state");
        state.textContent = data.state.replaceAll("_", " ");
        state.className = "badge state-" + data.state;
      }
      body.dataset.loaded = String(Number(body.dataset.loaded || 0) + 1);
      error.hidden = true;
    } catch (exc) {
      error.hidden = false;
      error.textContent = "no answer: " + exc.message;
    }
    if (VIEW !== "overview") refreshState();
    if (LIVE) refreshControls();
    showAge();
  }

  async function refreshState() {
    try {
      const d = await getJSON("/api/overview");
      const state = $("#state");
      state.textContent = d.state.replaceAll("_", " ");
      state.className = "badge state-" + d.state;
    } catch (exc) { /* the view's own error says it */ }
  }

  async function refreshControls() {
    if (!$("#controls-table")) return;
    try {
      const d = await getJSON("/api/controls");
      fillTable("#controls-table", d.controls, (c) => [c.at, c.who, c.action + (c.symbol ? " " + c.symbol : ""), c.status,
        c.bar_datetime || "–", c.message || ""]);
    } catch (exc) { /* shown by the view's refresh */ }
  }

  async function control(action) {
    const payload = {action};
    if (action === "flatten") payload.symbol = $("#flatten-symbol").value || null;
    if (action === "reset_kill_switch") payload.confirm = $("#reset-confirm").value;
    const out = $("#control-result");
    try {
      const response = await fetch("/api/controls", {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-Dashboard-Control": "1"}, body: JSON.stringify(payload)});
      const answer = await response.json();
      out.textContent = response.ok ? "asked (" + answer.id + "): " + answer.message : "refused: " + answer.detail;
    } catch (exc) {
      out.textContent = "refused: " + exc.message;
    }
    refreshControls();
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("[data-action]")) button.addEventListener("click", () => control(button.dataset.action));
    const form = forms[VIEW] ? $(forms[VIEW]) : null;
    if (form) {
      form.addEventListener("change", refresh);
      form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
    }
    refresh();
    setInterval(refresh, REFRESH_MS);
    setInterval(showAge, 1000);
  });
})();
