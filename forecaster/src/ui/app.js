// Presage web UI: series search, charts of history, expected band and forecast, alerts and
// silences. Plain DOM and SVG, talking to the daemon's JSON API. The page state lives in the
// query string (?series=<selector>&range=24h&horizon=6h&q=<search>), so any view can be linked.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  /** Series charted per selector at most. */
  const MAX_CHARTS = 6;
  /** Series listed per search at most. */
  const MAX_RESULTS = 50;
  /** Seconds between refreshes of alerts, silences and status; charts refresh every other time. */
  const REFRESH_SECONDS = 30;
  const RANGES = { "6h": 6 * 3600, "24h": 86400, "2d": 2 * 86400, "7d": 7 * 86400 };
  const HORIZONS = ["1h", "6h", "24h"];

  const $ = (id) => document.getElementById(id);

  const state = {
    selectors: [],
    range: "24h",
    horizon: "6h",
    query: "",
    alerts: [],
    silences: [],
    hideResolved: false,
    showExpired: false,
  };

  // ---------------------------------------------------------------- small helpers

  /** Builds an element: el("li", {class: "x", "data-a": 1}, child, "text", …). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") {
        node.addEventListener(k.slice(2), v);
      } else {
        node.setAttribute(k, v === true ? "" : String(v));
      }
    }
  }

  function append(node, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function escapeValue(v) {
    return String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  }

  /** `name{a="1",b="2"}` for a label set (`__name__` as the metric name). */
  function seriesName(labels) {
    const name = labels.__name__ || "";
    const rest = Object.keys(labels)
      .filter((k) => k !== "__name__")
      .sort()
      .map((k) => `${k}="${escapeValue(labels[k])}"`);
    if (!rest.length) return name || "{}";
    return `${name}{${rest.join(",")}}`;
  }

  /** Formats a number for axes and facts: 3 significant digits, SI suffixes for large values. */
  function fmt(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e15) return v.toExponential(2);
    for (const [scale, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e4, "k"]]) {
      if (a >= scale) return trim((v / scale).toPrecision(3)) + suffix;
    }
    if (a === 0) return "0";
    if (a < 1e-3) return v.toExponential(2);
    return trim(v.toPrecision(a >= 100 ? 4 : 3));
  }

  function trim(s) {
    return s.includes(".") && !s.includes("e") ? s.replace(/\.?0+$/, "") : s;
  }

  /** `3h10m`, `45s`, `2d4h`. */
  function fmtDuration(seconds) {
    if (!Number.isFinite(seconds)) return "–";
    let s = Math.round(Math.abs(seconds));
    const sign = seconds < 0 ? "-" : "";
    if (s < 60) return `${sign}${s}s`;
    const parts = [];
    for (const [unit, len] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= len) {
        parts.push(Math.floor(s / len) + unit);
        s %= len;
      }
      if (parts.length === 2) break;
    }
    return sign + parts.join("");
  }

  function ago(ms) {
    const d = (Date.now() - ms) / 1000;
    return d >= 0 ? `${fmtDuration(d)} ago` : `in ${fmtDuration(-d)}`;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  const fullFmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });

  function fmtTime(ms) {
    return fullFmt.format(new Date(ms));
  }

  function timeEl(ms, text) {
    return el("time", { datetime: new Date(ms).toISOString(), title: fmtTime(ms) }, text);
  }

  let toastTimer = 0;
  function toast(message, isError) {
    const t = $("toast");
    t.textContent = message;
    t.classList.toggle("error", Boolean(isError));
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.textContent = ""; }, 6000);
  }

  // ---------------------------------------------------------------- API

  class ApiFailure extends Error {}

  const TOKEN_KEY = "presage.token";

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  /** Asks for an API token when the daemon requires one (`[auth]`). */
  function askForToken(message) {
    const form = $("token-form");
    $("token-reason").textContent = message;
    if (form.hidden) {
      form.hidden = false;
      $("token").focus();
    }
  }

  async function api(path, options) {
    const opts = Object.assign({}, options);
    const headers = Object.assign({ Accept: "application/json" }, opts.headers);
    const token = storedToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    opts.headers = headers;
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new ApiFailure(`cannot reach the daemon: ${e.message}`);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (res.status === 401) {
      const message = body && body.error ? body.error : "authentication required";
      askForToken(message);
      throw new ApiFailure(message);
    }
    if (!body) throw new ApiFailure(`${res.status} ${res.statusText}: the answer is not JSON`);
    if (!res.ok || body.status !== "success") {
      throw new ApiFailure(body.error || `${res.status} ${res.statusText}`);
    }
    return body.data;
  }

  const q = encodeURIComponent;

  // ---------------------------------------------------------------- page state in the URL

  function readUrl() {
    const p = new URLSearchParams(location.search);
    state.selectors = [...new Set(p.getAll("series").map((s) => s.trim()).filter(Boolean))];
    state.range = RANGES[p.get("range")] ? p.get("range") : "24h";
    state.horizon = HORIZONS.includes(p.get("horizon")) ? p.get("horizon") : "6h";
    state.query = p.get("q") || (state.selectors.length === 1 ? state.selectors[0] : "");
    $("range").value = state.range;
    $("horizon").value = state.horizon;
    $("q").value = state.query;
  }

  function writeUrl(push) {
    const p = new URLSearchParams();
    for (const s of state.selectors) p.append("series", s);
    if (state.query && !(state.selectors.length === 1 && state.selectors[0] === state.query)) p.set("q", state.query);
    if (state.range !== "24h") p.set("range", state.range);
    if (state.horizon !== "6h") p.set("horizon", state.horizon);
    const url = p.toString() ? `/?${p}` : "/";
    if (url === location.pathname + location.search) return;
    if (push) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }

  // ---------------------------------------------------------------- status

  async function loadStatus() {
    const box = $("status");
    try {
      const s = await api("/api/v1/status");
      clear(box);
      $("version").textContent = `v${s.version}`;
      const item = (label, value, cls) => el("div", {}, el("dt", {}, label), el("dd", { class: cls }, value));
      box.append(
        item("state", s.ready ? "ready" : "starting", s.ready ? "ok" : "bad"),
        item("series", `${s.series}/${s.series_limit}`),
      );
    } catch (e) {
      clear(box);
      box.append(el("div", {}, el("dt", {}, "state"), el("dd", { class: "bad" }, "unreachable")));
    }
  }

  // ---------------------------------------------------------------- search

  let searchGeneration = 0;

  async function search(selector) {
    const generation = ++searchGeneration;
    const out = $("search-results");
    clear(out);
    if (!selector) return;
    out.append(el("p", { class: "empty" }, "Searching…"));
    let list;
    try {
      list = await api(`/api/v1/series?match[]=${q(selector)}&limit=${MAX_RESULTS + 1}`);
    } catch (e) {
      if (generation !== searchGeneration) return;
      clear(out);
      out.append(el("p", { class: "empty error" }, e.message));
      return;
    }
    // A newer search owns the results.
    if (generation !== searchGeneration) return;
    clear(out);
    if (!list.length) {
      out.append(el("p", { class: "empty" }, "No series match."));
      return;
    }
    const more = list.length > MAX_RESULTS;
    const rows = list.slice(0, MAX_RESULTS).map((s) => {
      const name = seriesName(s.labels);
      const charted = state.selectors.includes(name);
      const readiness = s.readiness ? s.readiness.state : "cold";
      const score = s.last_score ? s.last_score.score : null;
      return el("tr", { class: charted ? "selected" : null, "data-series": name },
        el("td", { class: "series-name" }, name),
        el("td", {}, el("span", { class: `readiness ${readiness}`, title: s.readiness ? s.readiness.reason : "" }, readiness)),
        el("td", { class: "num", title: "latest anomaly score" }, score === null ? "–" : score.toFixed(2)),
        el("td", { class: "num" }, String(s.steps)),
        el("td", { class: "action" },
          el("button", {
            type: "button",
            class: "button small secondary",
            "aria-pressed": charted ? "true" : "false",
            onclick: () => (state.selectors.includes(name) ? removeSelector(name) : addSelector(name)),
          }, charted ? "Hide chart" : "Chart")));
    });
    out.append(el("table", { class: "results" },
      el("caption", { class: "visually-hidden" }, "Matching series"),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Series"),
        el("th", { scope: "col" }, "Model"),
        el("th", { scope: "col", class: "num" }, "Score"),
        el("th", { scope: "col", class: "num" }, "Steps"),
        el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Action")))),
      el("tbody", {}, rows)));
    if (more) out.append(el("p", { class: "hint" }, `Showing the first ${MAX_RESULTS}; narrow the selector to see the rest.`));
  }

  function addSelector(selector) {
    if (!state.selectors.includes(selector)) state.selectors.push(selector);
    writeUrl(true);
    renderCharts();
    search(state.query);
  }

  function removeSelector(selector) {
    state.selectors = state.selectors.filter((s) => s !== selector);
    writeUrl(true);
    renderCharts();
    search(state.query);
  }

  // ---------------------------------------------------------------- charts

  let chartGeneration = 0;

  /** Draws a chart group per selector. A quiet refresh keeps the old charts until the new ones are ready. */
  async function renderCharts(quiet) {
    const generation = ++chartGeneration;
    const box = $("charts");
    if (!state.selectors.length) {
      clear(box);
      box.append(el("div", { class: "panel empty" }, "No chart yet: search for a series above and choose Chart."));
      return;
    }
    const groups = state.selectors.map((selector) => {
      const body = el("div", { class: "chart-list" }, el("p", { class: "chart-status" }, "Loading…"));
      const node = el("section", { class: "chart-group", "data-selector": selector, "aria-label": `Charts of ${selector}` },
        el("div", { class: "group-head" },
          el("code", {}, selector),
          el("button", {
            type: "button", class: "button small secondary",
            "aria-label": `Remove the charts of ${selector}`,
            onclick: () => removeSelector(selector),
          }, "Remove")),
        body);
      return { selector, body, node };
    });
    const swap = () => {
      clear(box);
      box.append(...groups.map((g) => g.node));
    };
    if (!quiet) swap();
    // One anomaly request for every chart.
    const anomalies = loadAnomalies();
    await Promise.all(groups.map(async ({ selector, body }) => {
      let content;
      try {
        content = await chartsOf(selector, anomalies);
      } catch (e) {
        content = [el("p", { class: "chart-status error" }, e.message)];
      }
      clear(body);
      body.append(...content);
    }));
    if (quiet && generation === chartGeneration) swap();
  }

  function loadAnomalies() {
    // The daemon keeps the newest 10000; each chart picks its own series and range.
    return api("/api/v1/anomalies?limit=10000").catch(() => []);
  }

  async function chartsOf(selector, anomaliesPromise) {
    const matched = await api(`/api/v1/series?match[]=${q(selector)}&limit=${MAX_CHARTS + 1}`);
    if (!matched.length) return [el("p", { class: "chart-status" }, "No series match this selector.")];
    const newest = Math.max(...matched.map((s) => s.last_ms));
    const startS = Math.floor(newest / 1000) - RANGES[state.range];
    const data = await api(
      `/api/v1/forecast?series=${q(selector)}&start=${startS}&horizon=${state.horizon}&limit=${MAX_CHARTS}`);
    const anomalies = await anomaliesPromise;
    const cards = data.series.map((s) => chartCard(s, data.step_seconds, startS * 1000, anomalies));
    if (matched.length > MAX_CHARTS) {
      cards.push(el("p", { class: "hint" }, `The first ${MAX_CHARTS} matching series are charted; narrow the selector to see others.`));
    }
    return cards;
  }

  /** Alerts about the series with these labels (alert labels carry the series' labels, `__name__` as `metric`). */
  function alertsOf(labels) {
    return state.alerts.filter((a) => {
      const l = a.labels || {};
      if ((l.metric || "") !== (labels.__name__ || "")) return false;
      return Object.keys(labels).every((k) => k === "__name__" || l[k] === labels[k]);
    });
  }

  function chartCard(s, stepSeconds, startMs, anomalies) {
    const name = seriesName(s.labels);
    const stepMs = stepSeconds * 1000;
    const history = s.history.map(([t, v]) => [t * 1000, v]).filter(([t]) => t >= startMs);
    const band = s.expected.map(([t, e, lo, hi]) => [t * 1000, e, lo, hi]).filter(([t]) => t >= startMs);
    const forecast = s.forecast.map(([t, e, lo, hi]) => [t * 1000, e, lo, hi]);
    const marks = (anomalies || [])
      .filter((a) => a.series_id === s.id && a.slot_ms >= startMs && Number.isFinite(a.value));
    const alerts = alertsOf(s.labels);
    const thresholds = [...new Set(alerts
      .filter((a) => a.state !== "resolved")
      .map((a) => a.explanation && a.explanation.threshold)
      .filter((t) => Number.isFinite(t)))];
    const windows = alerts.map((a) => [a.active_since_ms, a.resolved_at_ms || a.last_seen_ms, a]);

    const readiness = s.readiness ? s.readiness.state : "cold";
    const meta = el("div", { class: "chart-meta" },
      el("span", {}, "model ", el("b", {}, s.method || "none"), " ",
        el("span", { class: `readiness ${readiness}`, title: s.readiness ? s.readiness.reason : "" }, readiness)),
      s.periods_seconds && s.periods_seconds.length
        ? el("span", {}, "seasonality ", el("b", {}, s.periods_seconds.map(fmtDuration).join(", ")))
        : null,
      el("span", {}, "step ", el("b", {}, fmtDuration(stepSeconds))),
      s.last_score ? el("span", {}, "score ", el("b", {}, s.last_score.score.toFixed(2))) : null,
      alerts.length ? el("span", {}, "alerts ", el("b", {}, alerts.map((a) => a.labels.alertname).join(", "))) : null);

    const card = el("article", { class: "chart-card", "data-series": name, "data-series-id": s.id });
    const titleId = `chart-title-${s.id}`;
    card.append(
      el("div", { class: "chart-head" }, el("h3", { class: "chart-title", id: titleId }, name)),
      meta);
    const valid = history.filter(([, v]) => v !== null);
    if (!valid.length && !forecast.length) {
      card.append(el("p", { class: "chart-status" }, "No data in this range."));
      return card;
    }
    card.append(drawChart({ name, titleId, stepMs, history, band, forecast, marks, thresholds, windows }));
    return card;
  }

  /** Up to `count` round tick values covering [lo, hi]. */
  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return ticks;
  }

  const TIME_STEPS = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400]
    .map((s) => s * 1000);

  /** Time ticks on local round minutes, hours or days. */
  function timeTicks(lo, hi, count) {
    const step = TIME_STEPS.find((s) => (hi - lo) / s <= count) || TIME_STEPS[TIME_STEPS.length - 1];
    const offset = new Date(lo).getTimezoneOffset() * 60000;
    const ticks = [];
    for (let t = Math.ceil((lo - offset) / step) * step + offset; t <= hi; t += step) ticks.push(t);
    return { ticks, step };
  }

  function timeLabel(t, step) {
    const d = new Date(t);
    const midnight = d.getHours() === 0 && d.getMinutes() === 0;
    if (step >= 86400000 || midnight) return dayFmt.format(d);
    return timeFmt.format(d);
  }

  /** Keeps the first, lowest, highest and last point of every pixel column. */
  function decimate(points, xOf, columns) {
    if (points.length <= columns * 2) return points;
    const out = [];
    let bucket = null;
    let lo = null;
    let hi = null;
    let first = null;
    let last = null;
    const flush = () => {
      if (first === null) return;
      const picked = [first, lo, hi, last].filter((p, i, all) => all.indexOf(p) === i);
      picked.sort((a, b) => a[0] - b[0]);
      out.push(...picked);
      first = lo = hi = last = null;
    };
    for (const p of points) {
      if (p[1] === null) {
        flush();
        out.push(p);
        bucket = null;
        continue;
      }
      const b = Math.floor(xOf(p[0]));
      if (b !== bucket) {
        flush();
        bucket = b;
      }
      if (first === null) first = p;
      if (lo === null || p[1] < lo[1]) lo = p;
      if (hi === null || p[1] > hi[1]) hi = p;
      last = p;
    }
    flush();
    return out;
  }

  /** A line through `points` ([t, v|null]), broken at nulls and at gaps wider than `gap`. */
  function linePath(points, x, y, gap) {
    let d = "";
    let prev = null;
    for (const [t, v] of points) {
      if (v === null || !Number.isFinite(v)) {
        prev = null;
        continue;
      }
      d += `${prev === null || t - prev > gap ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      prev = t;
    }
    return d;
  }

  /** The area between the lower and upper edges of band rows [t, e, lo, hi], in runs without gaps. */
  function areaPath(rows, x, y, gap) {
    const runs = [];
    let run = [];
    let prev = null;
    for (const r of rows) {
      if (!Number.isFinite(r[2]) || !Number.isFinite(r[3])) continue;
      if (prev !== null && r[0] - prev > gap) {
        runs.push(run);
        run = [];
      }
      run.push(r);
      prev = r[0];
    }
    runs.push(run);
    return runs
      .filter((r) => r.length > 1)
      .map((r) => {
        const top = r.map((p) => `${x(p[0]).toFixed(1)},${y(p[3]).toFixed(1)}`);
        const bottom = r.slice().reverse().map((p) => `${x(p[0]).toFixed(1)},${y(p[2]).toFixed(1)}`);
        return `M${top.join("L")}L${bottom.join("L")}Z`;
      })
      .join("");
  }

  function nearestIndex(points, t) {
    let lo = 0;
    let hi = points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid][0] < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(points[lo - 1][0] - t) < Math.abs(points[lo][0] - t)) lo -= 1;
    return lo;
  }

  let clipSeq = 0;

  /** The width charts are drawn at: the cards' inner width, so that text keeps its size. */
  function chartWidth() {
    const inner = $("charts").clientWidth - 34;
    return Math.round(Math.min(1600, Math.max(320, inner || 960)));
  }

  function drawChart(c) {
    const W = chartWidth();
    const H = W < 640 ? 220 : 280;
    const M = { top: 12, right: 18, bottom: 26, left: 58 };
    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const points = c.history.filter(([, v]) => v !== null);
    const gap = c.stepMs * 3.5;

    // Domains: time over history and forecast; values over what is drawn, with the forecast
    // band allowed to widen the scale by at most half the observed span on either side.
    const times = [];
    if (c.history.length) times.push(c.history[0][0], c.history[c.history.length - 1][0]);
    if (c.band.length) times.push(c.band[0][0], c.band[c.band.length - 1][0]);
    if (c.forecast.length) times.push(c.forecast[0][0], c.forecast[c.forecast.length - 1][0]);
    let t0 = Math.min(...times);
    let t1 = Math.max(...times);
    if (t1 <= t0) t1 = t0 + c.stepMs;
    let lo = Infinity;
    let hi = -Infinity;
    const see = (v) => {
      if (Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    };
    points.forEach(([, v]) => see(v));
    c.band.forEach(([, e, l, u]) => { see(e); see(l); see(u); });
    c.thresholds.forEach(see);
    c.marks.forEach((a) => see(a.value));
    if (!Number.isFinite(lo)) c.forecast.forEach(([, e]) => see(e));
    const core = Math.max(hi - lo, Math.abs(hi) * 0.02, 1e-9);
    c.forecast.forEach(([, e, l, u]) => {
      see(Math.max(e, lo - core)); see(Math.min(e, hi + core));
      see(Math.max(l, lo - core / 2)); see(Math.min(u, hi + core / 2));
    });
    if (hi - lo < 1e-12) {
      const pad = Math.abs(hi) * 0.05 || 1;
      lo -= pad;
      hi += pad;
    }
    const yTicks = niceTicks(lo, hi, H < 250 ? 4 : 5);
    const step = yTicks.length > 1 ? yTicks[1] - yTicks[0] : 0;
    lo = Math.min(lo, yTicks[0]);
    hi = Math.max(hi, yTicks[yTicks.length - 1]);
    if (step > 0 && hi - yTicks[yTicks.length - 1] > step * 0.25) hi = yTicks[yTicks.length - 1] + step;

    const x = (t) => M.left + ((t - t0) / (t1 - t0)) * pw;
    const y = (v) => M.top + ph - ((v - lo) / (hi - lo)) * ph;
    const clipId = `plot-clip-${++clipSeq}`;

    const grid = svgEl("g", { class: "grid", "aria-hidden": "true" });
    const labels = svgEl("g", { "aria-hidden": "true" });
    for (const v of yTicks) {
      const yy = y(v).toFixed(1);
      grid.append(svgEl("line", { x1: M.left, x2: W - M.right, y1: yy, y2: yy }));
      labels.append(svgEl("text", { class: "axis-label", x: M.left - 8, y: yy, "text-anchor": "end", "dominant-baseline": "middle" }, fmt(v)));
    }
    const tt = timeTicks(t0, t1, Math.max(3, Math.floor(pw / 110)));
    for (const t of tt.ticks) {
      const xx = x(t).toFixed(1);
      grid.append(svgEl("line", { x1: xx, x2: xx, y1: M.top, y2: M.top + ph }));
      labels.append(svgEl("text", { class: "axis-label", x: xx, y: H - 8, "text-anchor": "middle" }, timeLabel(t, tt.step)));
    }

    const plot = svgEl("g", { "clip-path": `url(#${clipId})` });
    const lastT = points.length ? points[points.length - 1][0] : t0;
    if (c.forecast.length) {
      plot.append(svgEl("rect", { class: "future", x: x(lastT), y: M.top, width: Math.max(0, x(t1) - x(lastT)), height: ph }));
    }
    for (const [from, to, a] of c.windows) {
      if (!Number.isFinite(from) || to < t0) continue;
      const x0 = x(Math.max(from, t0));
      const x1 = x(Math.min(Math.max(to, from + c.stepMs), t1));
      plot.append(svgEl("rect", {
        class: "alert-window", x: x0.toFixed(1), y: M.top, width: Math.max(1, x1 - x0).toFixed(1), height: ph,
        "data-alertname": a.labels.alertname,
      }, svgEl("title", {}, `${a.labels.alertname} (${a.state}) from ${fmtTime(from)}`)));
    }
    const bandD = areaPath(c.band, x, y, gap);
    if (bandD) plot.append(svgEl("path", { class: "band", d: bandD }));
    const expectedD = linePath(c.band.map(([t, e]) => [t, e]), x, y, gap);
    if (expectedD) plot.append(svgEl("path", { class: "expected", d: expectedD }));
    const fcBandD = areaPath(c.forecast, x, y, gap);
    if (fcBandD) plot.append(svgEl("path", { class: "forecast-band", d: fcBandD }));
    // The forecast line starts at the last observed value so the two read as one curve.
    const fcLine = c.forecast.map(([t, e]) => [t, e]);
    if (points.length && fcLine.length && fcLine[0][0] - lastT <= gap) fcLine.unshift(points[points.length - 1]);
    const fcD = linePath(fcLine, x, y, gap);
    if (fcD) plot.append(svgEl("path", { class: "forecast", d: fcD }));
    const drawn = decimate(c.history, x, pw);
    const historyD = linePath(drawn, x, y, gap);
    if (historyD) plot.append(svgEl("path", { class: "history", d: historyD }));
    for (const th of c.thresholds) {
      const yy = y(th).toFixed(1);
      plot.append(svgEl("line", { class: "threshold", x1: M.left, x2: W - M.right, y1: yy, y2: yy, "data-value": th }));
      plot.append(svgEl("text", { class: "threshold-label", x: M.left + 6, y: (y(th) - 5).toFixed(1) }, `threshold ${fmt(th)}`));
    }
    if (points.length && c.forecast.length) {
      const xx = x(lastT).toFixed(1);
      plot.append(svgEl("line", { class: "now", x1: xx, x2: xx, y1: M.top, y2: M.top + ph }));
    }
    const markGroup = svgEl("g", { class: "anomalies" });
    for (const a of c.marks) {
      markGroup.append(svgEl("circle", {
        class: "anomaly", cx: x(a.slot_ms).toFixed(1), cy: y(a.value).toFixed(1), r: (2.5 + 2.5 * a.score).toFixed(1),
        "data-score": a.score.toFixed(3),
      }, svgEl("title", {}, `anomaly at ${fmtTime(a.slot_ms)}: ${fmt(a.value)}, expected ${fmt(a.lower)} to ${fmt(a.upper)}, score ${a.score.toFixed(2)}`)));
    }
    plot.append(markGroup);

    const cross = svgEl("line", { class: "crosshair", y1: M.top, y2: M.top + ph, visibility: "hidden" });
    const dot = svgEl("circle", { class: "cursor-dot", r: 3.5, visibility: "hidden" });
    const hit = svgEl("rect", { class: "hit", x: M.left, y: M.top, width: pw, height: ph });

    const last = points.length ? points[points.length - 1] : null;
    const descId = `${c.titleId}-desc`;
    const summary = [
      `${points.length} points from ${points.length ? fmtTime(points[0][0]) : "–"} to ${last ? fmtTime(last[0]) : "–"}`,
      last ? `last value ${fmt(last[1])}` : null,
      c.band.length ? `expected now ${fmt(c.band[c.band.length - 1][1])} (${fmt(c.band[c.band.length - 1][2])} to ${fmt(c.band[c.band.length - 1][3])})` : "no expected band yet",
      c.forecast.length ? `forecast to ${fmtTime(c.forecast[c.forecast.length - 1][0])}: ${fmt(c.forecast[c.forecast.length - 1][1])}` : "no forecast",
      `${c.marks.length} anomalous steps`,
      c.thresholds.length ? `threshold ${c.thresholds.map(fmt).join(", ")}` : null,
    ].filter(Boolean).join("; ") + ".";

    const svg = svgEl("svg", {
      class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": c.titleId, "aria-describedby": descId,
      preserveAspectRatio: "xMidYMid meet",
      "data-points": points.length, "data-band": c.band.length, "data-forecast": c.forecast.length,
      "data-anomalies": c.marks.length, "data-threshold": c.thresholds.length ? c.thresholds.join(",") : null,
    },
    svgEl("defs", {}, svgEl("clipPath", { id: clipId }, svgEl("rect", { x: M.left, y: M.top - 2, width: pw, height: ph + 4 }))),
    grid, plot, labels, cross, dot, hit);

    const tip = el("div", { class: "tooltip", hidden: true, "aria-hidden": "true" });
    const figure = el("figure", { class: "chart-figure", tabindex: "0", "aria-label": `Chart of ${c.name}; arrow keys move the cursor` },
      svg, tip);

    // Cursor: the nearest history step under the pointer (or moved with the arrow keys).
    const bandAt = new Map(c.band.map((r) => [r[0], r]));
    const markAt = new Map(c.marks.map((a) => [a.slot_ms, a]));
    let cursor = -1;
    const show = (i) => {
      if (!points.length) return;
      cursor = Math.max(0, Math.min(points.length - 1, i));
      const [t, v] = points[cursor];
      const xx = x(t);
      cross.setAttribute("x1", xx.toFixed(1));
      cross.setAttribute("x2", xx.toFixed(1));
      cross.setAttribute("visibility", "visible");
      dot.setAttribute("cx", xx.toFixed(1));
      dot.setAttribute("cy", y(Math.min(hi, Math.max(lo, v))).toFixed(1));
      dot.setAttribute("visibility", "visible");
      clear(tip);
      const row = (k, val) => el("div", { class: "tt-row" }, el("span", {}, k), el("span", {}, val));
      const b = bandAt.get(t);
      const a = markAt.get(t);
      tip.append(el("div", { class: "tt-time" }, fmtTime(t)), row("value", fmt(v)));
      if (b) tip.append(row("expected", fmt(b[1])), row("band", `${fmt(b[2])} – ${fmt(b[3])}`));
      if (a) tip.append(row("anomaly score", a.score.toFixed(2)));
      tip.hidden = false;
      const rect = svg.getBoundingClientRect();
      const scale = rect.width / W;
      const left = xx * scale;
      const tipWidth = tip.offsetWidth || 180;
      tip.style.left = `${left + 14 + tipWidth > rect.width ? left - 14 - tipWidth : left + 14}px`;
      tip.style.top = `${M.top * scale + 6}px`;
    };
    const hide = () => {
      cross.setAttribute("visibility", "hidden");
      dot.setAttribute("visibility", "hidden");
      tip.hidden = true;
    };
    hit.addEventListener("pointermove", (ev) => {
      const rect = svg.getBoundingClientRect();
      const vx = ((ev.clientX - rect.left) / rect.width) * W;
      show(nearestIndex(points, t0 + ((vx - M.left) / pw) * (t1 - t0)));
    });
    hit.addEventListener("pointerleave", hide);
    figure.addEventListener("blur", hide);
    figure.addEventListener("keydown", (ev) => {
      const moves = { ArrowLeft: -1, ArrowRight: 1, PageUp: -60, PageDown: 60 };
      if (ev.key in moves) {
        ev.preventDefault();
        show(cursor < 0 ? points.length - 1 : cursor + moves[ev.key]);
      } else if (ev.key === "Home" || ev.key === "End") {
        ev.preventDefault();
        show(ev.key === "Home" ? 0 : points.length - 1);
      } else if (ev.key === "Escape") {
        hide();
      }
    });

    const legend = el("ul", { class: "legend", "aria-hidden": "true" },
      el("li", {}, el("span", { class: "swatch history" }), "history"),
      c.band.length ? el("li", {}, el("span", { class: "swatch band" }), "expected band") : null,
      c.forecast.length ? el("li", {}, el("span", { class: "swatch forecast" }), `forecast (${state.horizon})`) : null,
      c.thresholds.length ? el("li", {}, el("span", { class: "swatch threshold" }), "threshold") : null,
      c.marks.length ? el("li", {}, el("span", { class: "swatch anomaly" }), `anomalies (${c.marks.length})`) : null,
      c.windows.length ? el("li", {}, el("span", { class: "swatch alert-window" }), "alert active") : null);

    return el("div", {}, figure, legend, el("p", { class: "chart-summary", id: descId }, summary));
  }

  // ---------------------------------------------------------------- alerts

  async function loadAlerts() {
    try {
      state.alerts = await api("/api/v1/alerts");
      renderAlerts();
    } catch (e) {
      state.alerts = [];
      const list = $("alerts");
      clear(list);
      list.append(el("li", { class: "empty error" }, e.message));
    }
  }

  function alertSeries(a) {
    // The alert's link to its series in this UI carries the series selector.
    try {
      const s = new URL(a.generator_url, location.href).searchParams.get("series");
      if (s) return s;
    } catch (e) {
      // Fall through to the labels.
    }
    const labels = {};
    for (const [k, v] of Object.entries(a.labels || {})) {
      if (!["alertname", "rule_kind", "severity"].includes(k)) labels[k === "metric" ? "__name__" : k] = v;
    }
    return seriesName(labels);
  }

  function silenceSelectorFor(a) {
    const keep = Object.entries(a.labels || {}).filter(([k]) => k !== "rule_kind" && k !== "severity");
    keep.sort(([x], [y]) => (x === "alertname" ? -1 : y === "alertname" ? 1 : x.localeCompare(y)));
    return `{${keep.map(([k, v]) => `${k}="${escapeValue(v)}"`).join(",")}}`;
  }

  function renderAlerts() {
    const list = $("alerts");
    clear(list);
    const order = { firing: 0, pending: 1, resolved: 2 };
    const shown = state.alerts
      .filter((a) => !state.hideResolved || a.state !== "resolved")
      .sort((a, b) => (order[a.state] - order[b.state]) || (b.last_seen_ms - a.last_seen_ms));
    const active = state.alerts.filter((a) => a.state !== "resolved").length;
    $("alerts-count").textContent = state.alerts.length ? `${active} active / ${state.alerts.length}` : "";
    if (!shown.length) {
      list.append(el("li", { class: "empty" }, state.alerts.length ? "No active alerts (resolved ones are hidden)." : "No alerts."));
      return;
    }
    for (const a of shown) list.append(alertItem(a));
  }

  function alertItem(a) {
    const ex = a.explanation || {};
    const ann = a.annotations || {};
    const name = a.labels.alertname || "alert";
    const severity = a.labels.severity || "";
    const muted = (a.silenced_by && a.silenced_by.length) || (a.inhibited_by && a.inhibited_by.length);
    const series = alertSeries(a);
    const when = a.state === "resolved" && a.resolved_at_ms
      ? ["resolved ", timeEl(a.resolved_at_ms, ago(a.resolved_at_ms))]
      : ["since ", timeEl(a.active_since_ms, ago(a.active_since_ms))];
    const facts = [];
    const fact = (k, v) => facts.push(el("div", {}, el("dt", {}, k), el("dd", {}, v)));
    if (Number.isFinite(ex.value)) fact("value", fmt(ex.value));
    if (ex.band) fact("expected", `${fmt(ex.band.lower)} – ${fmt(ex.band.upper)}`);
    if (Number.isFinite(ex.score)) fact("score", ex.score.toFixed(2));
    if (Number.isFinite(ex.threshold)) fact("threshold", fmt(ex.threshold));
    if (ex.eta) fact("ETA", `${fmtDuration(ex.eta.p50_seconds)} (P10 ${fmtDuration(ex.eta.p10_seconds)}, P90 ${fmtDuration(ex.eta.p90_seconds)})`);
    if (ex.seasonality && ex.seasonality.length) fact("seasonality", ex.seasonality.join(", "));
    const summary = ex.summary || ann.summary || "";
    const suggestion = ann.suggestion || ex.suggestion || "";
    // The explanation repeats the summary and ends with the suggestion: show what it adds.
    let explanation = ex.text || ann.explanation || ann.description || "";
    if (summary && explanation.startsWith(summary)) explanation = explanation.slice(summary.length);
    if (suggestion) explanation = explanation.replace(`Suggestion: ${suggestion}`, "").replace(suggestion, "");
    explanation = explanation.replace(/^[\s.]+/, "").trim();
    return el("li", {
      class: muted ? "alert muted" : "alert",
      "data-alertname": name, "data-state": a.state, "data-fingerprint": a.fingerprint, "data-severity": severity,
    },
    el("div", { class: "alert-head" },
      el("span", { class: `badge ${a.state}` }, a.state),
      el("span", { class: "alert-name" }, name),
      severity ? el("span", { class: `severity ${severity}` }, severity) : null,
      muted ? el("span", { class: "badge muted", title: (a.silenced_by || []).concat(a.inhibited_by || []).join(", ") },
        a.silenced_by && a.silenced_by.length ? "silenced" : "inhibited") : null,
      el("span", { class: "alert-when" }, when)),
    el("a", { class: "alert-series", href: `/?series=${q(series)}`, onclick: (ev) => { ev.preventDefault(); addSelector(series); } }, series),
    summary ? el("p", { class: "alert-summary" }, summary) : null,
    explanation ? el("p", { class: "alert-explanation" }, explanation) : null,
    suggestion ? el("div", { class: "alert-suggestion" }, el("strong", {}, "Suggestion"), suggestion) : null,
    facts.length ? el("dl", { class: "facts" }, facts) : null,
    el("div", { class: "alert-actions" },
      el("button", { type: "button", class: "button small secondary", onclick: () => addSelector(series) }, "Chart"),
      el("button", {
        type: "button", class: "button small secondary",
        onclick: () => {
          $("silence-matchers").value = silenceSelectorFor(a);
          $("silence-comment").focus();
          $("silence-form").scrollIntoView({ behavior: "smooth", block: "nearest" });
        },
      }, "Silence…")));
  }

  // ---------------------------------------------------------------- silences

  async function loadSilences() {
    try {
      state.silences = await api("/api/v1/silences");
      renderSilences();
    } catch (e) {
      state.silences = [];
      const list = $("silences");
      clear(list);
      list.append(el("li", { class: "empty error" }, e.message));
    }
  }

  function matcherText(m) {
    const op = m.isEqual === false ? (m.isRegex ? "!~" : "!=") : (m.isRegex ? "=~" : "=");
    return `${m.name}${op}"${escapeValue(m.value)}"`;
  }

  function renderSilences() {
    const list = $("silences");
    clear(list);
    const stateOf = (s) => (s.status && s.status.state) || "active";
    const order = { active: 0, pending: 1, expired: 2 };
    const shown = state.silences
      .filter((s) => state.showExpired || stateOf(s) !== "expired")
      .sort((a, b) => (order[stateOf(a)] - order[stateOf(b)]) || String(b.endsAt).localeCompare(String(a.endsAt)));
    const live = state.silences.filter((s) => stateOf(s) !== "expired").length;
    $("silences-count").textContent = state.silences.length ? `${live} active / ${state.silences.length}` : "";
    if (!shown.length) {
      list.append(el("li", { class: "empty" }, "No silences."));
      return;
    }
    for (const s of shown) {
      const st = stateOf(s);
      const ends = Date.parse(s.endsAt);
      const starts = Date.parse(s.startsAt);
      const when = st === "expired" ? ["ended ", timeEl(ends, ago(ends))]
        : st === "pending" ? ["starts ", timeEl(starts, ago(starts))]
          : ["ends ", timeEl(ends, ago(ends))];
      const expire = st === "expired" ? null : el("button", {
        type: "button", class: "button small danger", "aria-label": `Expire silence ${s.id}`,
        onclick: (ev) => expireSilence(s.id, ev.currentTarget),
      }, "Expire");
      list.append(el("li", { class: "silence", "data-id": s.id, "data-state": st },
        el("div", { class: "silence-head" },
          el("span", { class: `badge ${st}` }, st),
          el("span", { class: "silence-when" }, when)),
        el("ul", { class: "matchers", "aria-label": "Matchers" }, (s.matchers || []).map((m) => el("li", {}, matcherText(m)))),
        s.comment ? el("p", { class: "silence-comment" }, s.comment) : null,
        el("div", { class: "silence-by" }, s.createdBy ? `by ${s.createdBy}` : ""),
        expire ? el("div", { class: "silence-actions" }, expire) : null));
    }
  }

  async function expireSilence(id, button) {
    // Two clicks: the first arms the button, the second expires.
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = "Confirm expire";
      setTimeout(() => {
        button.classList.remove("confirm");
        button.textContent = "Expire";
      }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await api(`/api/v1/silences/${q(id)}`, { method: "DELETE" });
      toast("Silence expired.");
    } catch (e) {
      toast(`Cannot expire the silence: ${e.message}`, true);
    }
    await Promise.all([loadSilences(), loadAlerts()]);
  }

  async function createSilence(ev) {
    ev.preventDefault();
    const form = ev.currentTarget;
    const error = $("silence-error");
    error.textContent = "";
    const data = new FormData(form);
    let matchers = String(data.get("matchers") || "").trim();
    if (matchers && !matchers.includes("{")) matchers = `{${matchers}}`;
    const createdBy = String(data.get("createdBy") || "").trim();
    const body = {
      matchers,
      duration: String(data.get("duration") || "").replace(/\s+/g, ""),
      createdBy: createdBy || "web UI",
      comment: String(data.get("comment") || "").trim(),
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const out = await api("/api/v1/silences", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      try {
        if (createdBy) localStorage.setItem("presage.createdBy", createdBy);
      } catch (e) {
        // Storage may be disabled; the name is only a convenience.
      }
      form.reset();
      $("silence-creator").value = createdBy;
      toast(`Silence ${out.silenceID} created.`);
      await Promise.all([loadSilences(), loadAlerts()]);
    } catch (e) {
      error.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- start-up and refresh

  async function loadAll(withCharts, quiet) {
    // Alerts first: charts draw their thresholds and alert windows.
    await Promise.all([loadStatus(), loadAlerts(), loadSilences()]);
    if (withCharts) await renderCharts(quiet);
  }

  let refreshTimer = 0;
  let refreshCount = 0;
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      if (!document.hidden) {
        refreshCount += 1;
        await loadAll(refreshCount % 2 === 0, true);
      }
      scheduleRefresh();
    }, REFRESH_SECONDS * 1000);
  }

  async function start() {
    readUrl();
    try {
      $("silence-creator").value = localStorage.getItem("presage.createdBy") || "";
    } catch (e) {
      // No storage: leave the field empty.
    }
    $("search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.query = $("q").value.trim();
      writeUrl(false);
      search(state.query);
    });
    $("chart-all").addEventListener("click", () => {
      const sel = $("q").value.trim();
      if (!sel) {
        $("q").focus();
        return;
      }
      state.query = sel;
      addSelector(sel);
    });
    $("range").addEventListener("change", (ev) => {
      state.range = ev.target.value;
      writeUrl(false);
      renderCharts();
    });
    $("horizon").addEventListener("change", (ev) => {
      state.horizon = ev.target.value;
      writeUrl(false);
      renderCharts();
    });
    $("refresh").addEventListener("click", () => loadAll(true, true));
    $("hide-resolved").addEventListener("change", (ev) => {
      state.hideResolved = ev.target.checked;
      renderAlerts();
    });
    $("show-expired").addEventListener("change", (ev) => {
      state.showExpired = ev.target.checked;
      renderSilences();
    });
    $("silence-form").addEventListener("submit", createSilence);
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      try {
        sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      } catch (e) {
        toast("This browser does not keep the token: storage is disabled.", true);
        return;
      }
      $("token").value = "";
      $("token-form").hidden = true;
      loadAll(true);
      search(state.query);
    });
    let drawnWidth = chartWidth();
    let resizeTimer = 0;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        const width = chartWidth();
        if (Math.abs(width - drawnWidth) > drawnWidth * 0.15) {
          drawnWidth = width;
          renderCharts(true);
        }
      }, 400);
    });
    window.addEventListener("popstate", () => {
      readUrl();
      renderCharts();
      search(state.query);
    });

    await Promise.all([loadAll(true), search(state.query)]);
    $("app").dataset.state = "ready";
    scheduleRefresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
