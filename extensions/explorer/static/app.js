// The agentdbg session explorer: a small hash-routed app over the explorer's JSON API.
// Plain ES module, no dependencies; every text from the API goes into the page as text nodes.

const main = document.getElementById("main");
const FOLD = 400; // characters shown of a long value until "show all" is pressed
let replayTimer = null;

// -- helpers --------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function duration(ns) {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(ns >= 1e8 ? 0 : 1)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${ns} ns`;
}
export function usd(value) { return value ? `$${value.toFixed(6)}` : "—"; }
function tokens(tin, tout) { return tin || tout ? `${tin} / ${tout}` : "—"; }
function when(ns) { return new Date(ns / 1e6).toISOString().replace("T", " ").replace("Z", ""); }
function stringify(value) { return typeof value === "string" ? value : JSON.stringify(value); }

function token() { return sessionStorage.getItem("agentdbg-token") || ""; }

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== undefined));
  const url = `/api/${path}${query.toString() ? "?" + query : ""}`;
  const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
  const answer = await fetch(url, { headers });
  if (answer.status === 401) throw Object.assign(new Error("this explorer needs its token"), { auth: true });
  if (!answer.ok) throw new Error(`${answer.status}: ${await answer.text()}`);
  return answer.json();
}

function show(...nodes) {
  main.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
}

function failure(error) {
  if (error.auth) {
    const input = el("input", { type: "password", id: "token", autocomplete: "off" });
    const form = el("form", { class: "card", onsubmit: (event) => {
      event.preventDefault(); sessionStorage.setItem("agentdbg-token", input.value); route();
    } }, el("label", { for: "token" }, "Explorer token "), input, " ", el("button", { type: "submit" }, "Use"));
    show(el("h1", {}, "Sign in"), form);
    input.focus();
    return;
  }
  show(el("div", { class: "notice error", role: "alert" }, error.message));
}

// A value of any length: folded past FOLD characters, with a button that shows all of it.
function folded(value) {
  const text = stringify(value);
  if (text.length <= FOLD) return el("dd", {}, text);
  const dd = el("dd", {});
  const fill = (open) => {
    const button = el("button", { type: "button", class: "link", "aria-expanded": String(open),
      onclick: () => fill(!open) }, open ? "fold" : `show all ${text.length} characters`);
    dd.replaceChildren(open ? text : text.slice(0, FOLD) + "… ", el("span", { class: "fold-note" }, button));
  };
  fill(false);
  return dd;
}

function kv(map) {
  const entries = Object.entries(map || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return el("p", { class: "muted" }, "none");
  return el("dl", { class: "kv" }, entries.map(([key, value]) => [el("dt", {}, key), folded(value)]));
}

function kindBadge(kind) { return el("span", { class: `badge ${kind}` }, kind); }

function sessionLink(session, span, label) {
  const target = `#/session/${encodeURIComponent(session)}${span ? "?span=" + encodeURIComponent(span) : ""}`;
  return el("a", { href: target }, label || session);
}

// -- Sessions -------------------------------------------------------------------------------
async function sessionsView(params) {
  const field = (name, label, type = "text") => el("label", {}, label,
    el("input", { name, type, value: params.get(name) || "", step: type === "number" ? "any" : undefined }));
  const check = (name, label) => el("label", { class: "check" },
    el("input", { type: "checkbox", name, checked: params.get(name) === "1" }), label);
  const form = el("form", { class: "filters card", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    const query = new URLSearchParams();
    for (const [key, value] of data.entries()) if (value) query.set(key, value === "on" ? "1" : value);
    location.hash = `#/sessions?${query}`;
  } }, field("service", "Service"), field("agent", "Agent"), field("since", "Since (RFC 3339)"),
  field("until", "Until"), field("min_cost", "Min cost (USD)", "number"), check("errors", "has errors"),
  check("has_trigger", "has a trigger"), el("button", { type: "submit" }, "Filter"));
  const query = Object.fromEntries(params.entries());
  const { sessions } = await api("sessions", query);
  const rows = sessions.map((s) => el("tr", { class: s.errors ? "error" : "", dataset: { session: s.session } },
    el("td", {}, sessionLink(s.session)),
    el("td", {}, s.services.join(", ")), el("td", {}, s.agents.join(", ") || "—"),
    el("td", { class: "num" }, s.spans), el("td", {}, when(s.start_ns)), el("td", { class: "num" }, duration(s.duration_ns)),
    el("td", { class: "num" }, tokens(s.tokens_in, s.tokens_out)), el("td", { class: "num" }, usd(s.cost)),
    el("td", { class: "num" }, s.errors ? el("span", { class: "badge err" }, s.errors) : "0"),
    el("td", { class: "num" }, s.triggers ? el("span", { class: "badge trig" }, `${s.triggers} trigger${s.triggers > 1 ? "s" : ""}`) : "")));
  const head = el("tr", {}, ["Session", "Services", "Agents", "Spans", "Start (UTC)", "Duration", "Tokens in / out",
    "Cost", "Errors", "Triggers"].map((h, i) => el("th", { scope: "col", class: i >= 3 && i !== 4 ? "num" : "" }, h)));
  show(el("h1", {}, "Sessions"), form,
    sessions.length ? el("table", { id: "sessions" }, el("thead", {}, head), el("tbody", {}, rows))
      : el("p", { class: "notice" }, "No session matches (nothing stored yet, or the filters exclude everything)."));
}

// -- Session: the span tree on one timeline -------------------------------------------------
function treeOrder(spans) {
  const byId = new Map(spans.map((s) => [`${s.trace_id}/${s.span_id}`, s]));
  const roots = spans.filter((s) => !s.parent_id || !byId.has(`${s.trace_id}/${s.parent_id}`) || s.parent_id === s.span_id);
  const out = [];
  const visit = (span) => {
    out.push(span);
    for (const child of span.children || []) {
      const kid = byId.get(`${span.trace_id}/${child}`);
      if (kid) visit(kid);
    }
  };
  roots.forEach(visit);
  return out;
}

async function sessionView(id, params) {
  const data = await api(`sessions/${encodeURIComponent(id)}`);
  const total = Math.max(data.duration_ns, 1);
  const detail = el("section", { class: "card", id: "detail", "aria-label": "Span detail" },
    el("p", { class: "muted" }, "Choose a span to see its attributes, events, links and resource."));
  let selectedRow = null;
  const select = async (span, row, focus) => {
    if (selectedRow) selectedRow.classList.remove("selected");
    row.classList.add("selected"); selectedRow = row;
    history.replaceState(null, "", `#/session/${encodeURIComponent(id)}?span=${span.span_id}`);
    await spanDetail(detail, span);
    if (focus) row.querySelector("button").focus();
  };
  const rows = treeOrder(data.spans).map((span) => {
    const left = ((span.start_ns - data.start_ns) / total) * 100;
    const width = Math.max((span.duration_ns / total) * 100, 0.2);
    const row = el("tr", { class: span.error ? "error" : "", dataset: { spanId: span.span_id, kind: span.kind,
      durationNs: span.duration_ns, tokensIn: span.total.tokens_in, tokensOut: span.total.tokens_out,
      cost: span.total.cost } });
    const button = el("button", { type: "button", class: "row", onclick: () => select(span, row) },
      kindBadge(span.kind), span.name);
    row.append(
      el("td", { class: "name", style: `padding-left:${6 + span.depth * 16}px` }, button,
        span.error && span.status_message ? el("div", { class: "status-msg" }, span.status_message) : null),
      el("td", {}, span.service),
      el("td", { class: "num" }, duration(span.duration_ns)),
      el("td", { class: "num", title: "this span and its descendants" }, tokens(span.total.tokens_in, span.total.tokens_out)),
      el("td", { class: "num", title: "this span and its descendants" }, usd(span.total.cost)),
      el("td", { class: "bar-cell" }, el("div", { class: "bar-track", "aria-hidden": "true" },
        el("div", { class: `bar ${span.error ? "error" : span.kind}`, style: `left:${left}%;width:${width}%` }))));
    return row;
  });
  const head = el("tr", {}, ["Span", "Service", "Duration", "Tokens (subtree)", "Cost (subtree)", "Timeline"].map((h, i) => el("th", { scope: "col", class: i >= 2 && i <= 4 ? "num" : "" }, h)));
  const summary = el("div", { class: "summary card" },
    [["Spans", data.span_count], ["Traces", data.traces.length], ["Duration", duration(data.duration_ns)],
     ["Tokens in / out", tokens(data.tokens_in, data.tokens_out)], ["Cost", usd(data.cost)], ["Errors", data.errors],
     ["Services", data.services.join(", ")], ["Agents", data.agents.join(", ") || "—"]]
      .map(([label, value]) => el("div", {}, el("span", { class: "muted" }, label), el("b", {}, value))));
  show(el("h1", {}, "Session ", el("code", {}, id)),
    el("p", {}, el("a", { href: `#/replay/${encodeURIComponent(id)}` }, "▶ Replay this session"),
      data.truncated ? el("span", { class: "notice" }, " Only the first spans are shown.") : null),
    summary,
    el("div", { class: "layout" },
      el("div", { class: "card" }, el("table", { class: "tree", id: "tree" }, el("thead", {}, head), el("tbody", {}, rows))),
      detail));
  const wanted = params.get("span");
  const index = wanted ? data.spans.findIndex((s) => s.span_id === wanted) : -1;
  if (index >= 0) {
    const row = rows.find((r) => r.dataset.spanId === wanted);
    await select(data.spans[index], row, true);
  }
}

async function spanDetail(container, span) {
  container.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  try {
    const d = await api(`spans/${span.trace_id}/${span.span_id}`);
    container.replaceChildren(
      el("h2", {}, kindBadge(d.kind), d.name),
      el("dl", { class: "kv" },
        [["trace", d.trace_id], ["span", d.span_id], ["parent", d.parent_id || "—"], ["service", d.service],
         ["span kind", d.span_kind], ["scope", `${d.scope_name} ${d.scope_version}`.trim()],
         ["start", when(d.start_ns)], ["duration", duration(d.duration_ns)],
         ["status", d.status + (d.status_message ? `: ${d.status_message}` : "")]]
          .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      el("h2", {}, "Attributes"), kv(d.attributes),
      el("h2", {}, `Events (${d.events.length})`),
      d.events.length ? el("ol", {}, d.events.map((e) => el("li", {}, el("b", {}, e.name), " ",
        el("span", { class: "muted" }, when(e.time_ns)), kv(e.attributes)))) : el("p", { class: "muted" }, "none"),
      el("h2", {}, `Links (${d.links.length})`),
      d.links.length ? el("ol", {}, d.links.map((l) => el("li", {}, `${l.trace_id} / ${l.span_id}`, kv(l.attributes))))
        : el("p", { class: "muted" }, "none"),
      el("h2", {}, "Resource"), kv(d.resource));
  } catch (error) {
    container.replaceChildren(el("div", { class: "notice error", role: "alert" }, error.message));
  }
}

// -- Replay ---------------------------------------------------------------------------------
async function replayView(id) {
  const data = await api(`sessions/${encodeURIComponent(id)}`);
  const spans = data.spans; // already in start order
  let step = 0;
  let playing = false;
  const speed = el("select", { id: "speed", "aria-label": "Speed" },
    ["0.5", "1", "2", "4"].map((s) => el("option", { value: s, selected: s === "1" }, `${s}×`)));
  const counter = el("span", { id: "step-counter", "aria-live": "polite" });
  const steps = el("ol", { class: "steps", id: "steps" }, spans.map((span, i) => el("li", { dataset: { step: i, spanId: span.span_id } },
    kindBadge(span.kind), `${span.name} · ${duration(span.duration_ns)}`)));
  const chat = el("div", { class: "chat", id: "chat" });
  const current = el("div", { class: "card", id: "current" });
  const playButton = el("button", { type: "button", id: "play", onclick: () => (playing ? pause() : play()) }, "Play");
  const render = () => {
    counter.textContent = `Step ${step + 1} of ${spans.length}`;
    [...steps.children].forEach((li, i) => {
      li.classList.toggle("active", i === step); li.classList.toggle("done", i < step);
      if (i === step) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    });
    const span = spans[step];
    current.replaceChildren(el("div", {}, el("h2", {}, kindBadge(span.kind), span.name),
      el("p", {}, `${span.service} · ${duration(span.duration_ns)} · tokens ${tokens(span.tokens_in, span.tokens_out)} · ${usd(span.cost)}`),
      span.error ? el("p", { class: "status-msg" }, `Error: ${span.status_message || "status error"}`) : null,
      sessionLink(id, span.span_id, "open in the session view")));
    const bubbles = [];
    spans.slice(0, step + 1).forEach((s, i) => {
      for (const m of s.messages) {
        bubbles.push(el("div", { class: `msg ${m.direction} ${m.role} ${i === step ? "current" : ""}` },
          el("span", { class: "who" }, `${m.role || m.direction} · ${s.name}`), m.text));
      }
      if (s.error && s.kind === "tool") {
        bubbles.push(el("div", { class: `msg out tool_result ${i === step ? "current" : ""}` },
          el("span", { class: "who" }, `tool error · ${s.name}`), s.status_message || "failed"));
      }
    });
    chat.replaceChildren(...(bubbles.length ? bubbles : [el("p", { class: "muted" }, "No messages yet.")]));
    steps.children[step].scrollIntoView({ block: "nearest" });
  };
  const go = (to) => { step = Math.min(Math.max(to, 0), spans.length - 1); render(); };
  const tick = () => { if (step >= spans.length - 1) { pause(); return; } go(step + 1); schedule(); };
  const schedule = () => { replayTimer = setTimeout(tick, 1000 / Number(speed.value)); };
  const play = () => { playing = true; playButton.textContent = "Pause"; clearTimeout(replayTimer); schedule(); };
  const pause = () => { playing = false; playButton.textContent = "Play"; clearTimeout(replayTimer); };
  const controls = el("div", { class: "controls" },
    el("button", { type: "button", id: "first", onclick: () => go(0) }, "« First"),
    el("button", { type: "button", id: "prev", onclick: () => go(step - 1) }, "◀ Previous"),
    playButton,
    el("button", { type: "button", id: "next", onclick: () => go(step + 1) }, "Next ▶"),
    el("label", {}, "Speed ", speed), counter);
  show(el("h1", {}, "Replay ", el("code", {}, id)),
    el("p", {}, el("a", { href: `#/session/${encodeURIComponent(id)}` }, "← back to the session")), controls,
    el("div", { class: "replay" }, el("div", { class: "card" }, steps),
      el("div", {}, current, el("div", { class: "card" }, el("h2", {}, "Conversation"), chat))));
  render();
  document.getElementById("next").focus();
}

// -- Triggers -------------------------------------------------------------------------------
async function triggersView(params) {
  const { triggers } = await api("triggers", { kind: params.get("kind") || "" });
  const wanted = params.get("id");
  const rows = triggers.map((t) => el("tr", { id: `trigger-${t.id}`, class: wanted === t.id ? "selected" : "",
    dataset: { kind: t.kind } },
    el("td", {}, el("b", {}, t.kind), el("div", { class: "muted" }, `${t.severity} · ${t.status}`)),
    el("td", {}, Object.entries(t.subject || {}).map(([k, v]) => `${k}=${v}`).join(" ")),
    el("td", { class: "num" }, `${t.observed} vs ${t.threshold} ${t.unit || ""}`),
    el("td", {}, t.message),
    el("td", {}, el("code", {}, t.episode), el("div", { class: "muted" }, `${t.window?.start || ""} → ${t.window?.end || ""}`)),
    el("td", {}, t.example_spans.length ? el("ul", {}, t.example_spans.map((e) => el("li", {},
      sessionLink(e.session, e.span_id, e.span_id ? `span ${e.span_id.slice(0, 8)}… in ${e.session}` : `trace in ${e.session}`))))
      : el("span", { class: "muted" }, "examples not stored"))));
  const head = el("tr", {}, ["Kind", "Subject", "Observed vs threshold", "Message", "Episode / window", "Examples"]
    .map((h) => el("th", { scope: "col" }, h)));
  show(el("h1", {}, "Triggers"),
    triggers.length ? el("table", { id: "triggers" }, el("thead", {}, head), el("tbody", {}, rows))
      : el("p", { class: "notice" }, "No trigger event stored yet."));
  if (wanted) document.getElementById(`trigger-${wanted}`)?.scrollIntoView();
}

// -- Safety ---------------------------------------------------------------------------------
function target(value) {
  if (value && typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}=${stringify(v)}`).join(", ");
  return String(value ?? "");
}

function cause(c) {
  if (!c) return "—";
  const link = c.event_id && c.kind !== "admin"
    ? el("a", { href: `#/triggers?id=${encodeURIComponent(c.event_id)}` }, c.kind) : c.kind;
  return el("span", {}, link, ` on ${c.subject_key}`,
    c.observed !== null && c.observed !== undefined ? ` (observed ${c.observed} vs threshold ${c.threshold})` : "");
}

async function safetyView() {
  const [{ current, debug_api: debug }, { decisions }] = await Promise.all([api("safety"), api("decisions")]);
  const stateText = (c) => {
    if (c.state && typeof c.state === "object" && typeof c.state.state === "string") return c.state.state;
    if (c.family === "alert") return c.action === "alert" ? "firing" : "resolved";
    return c.state && typeof c.state === "object" ? JSON.stringify(c.state) : String(c.state ?? "");
  };
  const currentRows = current.map((c) => el("tr", { dataset: { family: c.family, target: target(c.target) } },
    el("td", {}, c.family), el("td", {}, target(c.target)), el("td", {}, c.action),
    el("td", { class: `state-${stateText(c)}` }, stateText(c)), el("td", {}, c.decided_at), el("td", {}, cause(c.cause))));
  const decisionRows = decisions.map((d) => el("tr", { dataset: { action: d.action } },
    el("td", {}, d.decided_at), el("td", {}, el("b", {}, d.action)), el("td", {}, target(d.target)),
    el("td", {}, cause(d.cause)), el("td", {}, d.reason), el("td", {}, d.requested_by || "")));
  const table = (id, headers, rows) => el("table", { id }, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
  show(el("h1", {}, "Safety"),
    el("p", {}, "Live state of the safety processor: ", el("a", { href: debug.breakers }, "/debug/breakers"), " · ",
      el("a", { href: debug.decisions }, "/debug/decisions"), el("span", { class: "muted" }, " (on the debug API)")),
    el("h2", {}, "Current breakers, throttles, canaries and alerts (latest decision per target)"),
    current.length ? table("current", ["Family", "Target", "Last action", "State", "Decided at", "Cause"], currentRows)
      : el("p", { class: "notice" }, "No decision stored yet."),
    el("h2", {}, "Decisions"),
    decisions.length ? table("decisions", ["Decided at", "Action", "Target", "Cause", "Reason", "Requested by"], decisionRows)
      : el("p", { class: "muted" }, "none"));
}

// -- Agent graph ----------------------------------------------------------------------------
const COLUMNS = ["agent", "model", "tool", "http", "db", "service"];
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function graphView(params) {
  const { nodes, edges } = await api("graph", { since: params.get("since") || "", until: params.get("until") || "" });
  // Columns by call depth (a node one step right of its deepest caller; cycles stop at the node count),
  // nodes in a column ordered by kind, then name.
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const e of edges) {
      const next = depth.get(e.source) + 1;
      if (next > depth.get(e.target) && next < nodes.length) { depth.set(e.target, next); changed = true; }
    }
    if (!changed) break;
  }
  const columnCount = Math.max(0, ...depth.values()) + 1;
  const place = new Map();
  const colWidth = 300, rowHeight = 56, boxW = 190, boxH = 34;
  let tallest = 1;
  for (let c = 0; c < columnCount; c++) {
    const here = nodes.filter((n) => depth.get(n.id) === c)
      .sort((a, b) => COLUMNS.indexOf(a.kind) - COLUMNS.indexOf(b.kind) || a.name.localeCompare(b.name));
    here.forEach((n, r) => place.set(n.id, { x: 20 + c * colWidth, y: 20 + r * rowHeight }));
    tallest = Math.max(tallest, here.length);
  }
  const drawing = svg("svg", { width: 40 + columnCount * colWidth, height: 40 + tallest * rowHeight, role: "img",
    "aria-label": "Agent graph: the table below lists the same edges" });
  for (const e of edges) {
    const a = place.get(e.source), b = place.get(e.target);
    if (!a || !b) continue;
    const x1 = a.x + boxW, y1 = a.y + boxH / 2, x2 = b.x, y2 = b.y + boxH / 2, bend = (x2 - x1) / 2;
    drawing.append(svg("path", { d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
      class: e.errors ? "edge err" : "edge" }),
      svg("text", { x: x2 - 8, y: y2 - 6, class: "edge-label" },
        `${e.calls}×${e.errors ? " · " + Math.round(e.error_rate * 100) + "% err" : ""}`));
  }
  for (const n of nodes) {
    const p = place.get(n.id);
    if (!p) continue;
    const label = `${n.kind}: ${n.name}`;
    drawing.append(svg("rect", { x: p.x, y: p.y, width: boxW, height: boxH, rx: 6, class: `node ${n.kind}` }),
      svg("text", { x: p.x + 8, y: p.y + 21, class: "node-label" }, label.length > 26 ? label.slice(0, 25) + "…" : label));
  }
  const rows = edges.map((e) => el("tr", { class: e.errors ? "error" : "", dataset: { source: e.source, target: e.target } },
    el("td", {}, e.source), el("td", {}, e.target), el("td", { class: "num" }, e.calls), el("td", { class: "num" }, e.errors),
    el("td", { class: "num" }, `${(e.error_rate * 100).toFixed(1)} %`)));
  show(el("h1", {}, "Agent graph"),
    el("p", { class: "muted" }, "Agents, models, tools and dependencies, from the stored parent → child span relations."),
    edges.length ? el("div", { class: "card graph" }, drawing) : el("p", { class: "notice" }, "No parent → child relation stored yet."),
    edges.length ? el("table", { id: "edges" }, el("thead", {}, el("tr", {}, ["From", "To", "Calls", "Errors", "Error rate"]
      .map((h, i) => el("th", { scope: "col", class: i >= 2 ? "num" : "" }, h)))), el("tbody", {}, rows)) : null);
}

// -- Live tail ------------------------------------------------------------------------------
let tailTimer = null;

async function tailView(params) {
  const service = params.get("service") || "", session = params.get("session") || "";
  const seen = new Set();
  let paused = false;
  const body = el("tbody", {});
  const status = el("span", { id: "tail-status", class: "muted", "aria-live": "polite" });
  const pauseButton = el("button", { type: "button", id: "tail-pause", onclick: () => {
    paused = !paused; pauseButton.textContent = paused ? "Resume" : "Pause";
  } }, "Pause");
  const form = el("form", { class: "filters card", onsubmit: (event) => {
    event.preventDefault();
    const data = new URLSearchParams([...new FormData(event.target).entries()].filter(([, v]) => v));
    location.hash = `#/tail?${data}`;
  } }, el("label", {}, "Service", el("input", { name: "service", value: service })),
  el("label", {}, "Session", el("input", { name: "session", value: session })),
  el("button", { type: "submit" }, "Tail"), pauseButton, status);
  const head = el("tr", {}, ["Start (UTC)", "Span", "Service", "Session", "Duration", "Tokens in / out", "Cost"]
    .map((h, i) => el("th", { scope: "col", class: i >= 4 ? "num" : "" }, h)));
  show(el("h1", {}, "Live tail"), form, el("table", { id: "tail" }, el("thead", {}, head), body));
  const poll = async () => {
    if (!document.getElementById("tail")) return; // the view was left
    if (!paused) {
      try {
        const { spans } = await api("tail", { service, session, limit: 200 });
        const fresh = spans.filter((s) => !seen.has(s.span_id)).reverse(); // oldest first, each on top
        for (const s of fresh) {
          seen.add(s.span_id);
          body.prepend(el("tr", { class: s.error ? "error" : "", dataset: { spanId: s.span_id } },
            el("td", {}, when(s.start_ns)), el("td", {}, kindBadge(s.kind), s.name), el("td", {}, s.service),
            el("td", {}, sessionLink(s.session, s.span_id)), el("td", { class: "num" }, duration(s.duration_ns)),
            el("td", { class: "num" }, tokens(s.tokens_in, s.tokens_out)), el("td", { class: "num" }, usd(s.cost))));
        }
        status.textContent = `${seen.size} spans · updated ${new Date().toISOString().slice(11, 19)} UTC`;
      } catch (error) {
        status.textContent = error.message;
      }
    }
    tailTimer = setTimeout(poll, 2000);
  };
  await poll();
}

// -- routing --------------------------------------------------------------------------------
async function route() {
  clearTimeout(replayTimer);
  clearTimeout(tailTimer);
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const view = parts[0] || "sessions";
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.dataset.view === view || (link.dataset.view === "sessions" && ["session", "replay"].includes(view));
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  show(el("p", { class: "muted" }, "Loading…"));
  try {
    if (view === "session" && parts[1]) await sessionView(parts[1], params);
    else if (view === "replay" && parts[1]) await replayView(parts[1]);
    else if (view === "triggers") await triggersView(params);
    else if (view === "safety") await safetyView();
    else if (view === "graph") await graphView(params);
    else if (view === "tail") await tailView(params);
    else await sessionsView(params);
  } catch (error) {
    failure(error);
  }
}

window.addEventListener("hashchange", route);
route();
