// The console's page: one view per URL fragment, each drawn from the console's JSON API and, for
// services and streams, redrawn every POLL_MS. Every value is put in the page as text (never as
// HTML), so nothing a service, an event or a span carries is ever run as code.

const POLL_MS = 2000;
const view = document.getElementById("view");
const statusLine = document.getElementById("status");
let config = { write: false, version: "", session: null };
let timer = null;
let generation = 0; // a view drawn for an older fragment must not overwrite the current one

// --- small helpers

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows, numeric = []) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      rows.map((cells) => el("tr", {}, cells.map((c, i) => el("td", numeric.includes(i) ? { class: "num" } : {}, c)))),
    ),
  );
}

async function api(path, options = {}) {
  const headers = { accept: "application/json", ...(options.headers || {}) };
  // A change from a cookie session repeats the session's CSRF token (a bearer caller has none).
  if (options.method && options.method !== "GET" && config.session && config.session.csrf) {
    headers["x-csrf-token"] = config.session.csrf;
  }
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

const fixed = (value, digits = 1) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const percent = (ratio) => (ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)} %`);
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const when = (unixSeconds) => (unixSeconds ? new Date(unixSeconds * 1000).toLocaleString() : "–");
const enc = encodeURIComponent;
const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;

async function act(path, confirm) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ confirm }) });
}

function errorBox(error, what = "Could not load") {
  return el("div", { class: "error-box" }, `${what}: ${error.message}`);
}

// --- views

async function servicesView() {
  const { items } = await api("api/services");
  const rows = items.map((i) => [
    i.service,
    i.instance_id,
    /^https?:\/\//.test(i.url) ? el("a", { href: i.url }, i.url) : i.url, // a registrant's URL is not trusted
    i.version,
    when(i.started_at),
    el("span", { class: i.ready ? "ok" : "bad", title: i.readiness }, i.ready ? "ready" : `not ready (${i.readiness})`),
    fixed(i.requests_per_second, 2),
    percent(i.error_ratio),
    fixed(i.p50_ms),
    fixed(i.p99_ms),
  ]);
  return [
    el("h2", {}, `Services (${plural(items.length, "instance")})`),
    items.length ? table(
      ["Service", "Instance", "URL", "Version", "Started", "Ready", "Req/s", "Errors", "p50 ms", "p99 ms"],
      rows,
      [6, 7, 8, 9],
    ) : el("p", { class: "muted" }, "No instance is registered in discovery."),
  ];
}

async function streamsView() {
  const { items } = await api("api/streams");
  const parts = [el("h2", {}, `Streams (${items.length})`)];
  for (const stream of items) {
    parts.push(
      el(
        "h3",
        {},
        `${stream.stream} · ${stream.length} entries · `,
        stream.dead_letters
          ? el("a", { href: `#/dlq/${enc(stream.stream)}`, class: "bad" }, plural(stream.dead_letters, "dead letter"))
          : el("span", { class: "muted" }, "no dead letters"),
      ),
    );
    parts.push(
      stream.groups.length
        ? table(
            ["Group", "Lag", "Pending", "Oldest pending", "Consumers (idle)", "Reclaimed", "Recreated"],
            stream.groups.map((g) => [
              g.group,
              g.lag,
              g.pending,
              g.pending ? seconds(g.oldest_pending_idle_ms) : "–",
              g.consumers.length ? g.consumers.map((c) => consumerCell(stream.stream, g.group, c)) : "none",
              g.reclaimed,
              g.recreated,
            ]),
            [1, 2, 3, 5, 6],
          )
        : el("p", { class: "muted" }, "No consumer group."),
    );
  }
  return parts;
}

function consumerCell(stream, group, c) {
  const cell = el("div", { class: "consumer", "data-consumer": c.name }, `${c.name} (idle ${seconds(c.idle_ms)}, ${c.pending} pending) `);
  // Offered only for a consumer silent long enough to be presumed dead (the console checks it again).
  if (config.write && c.pending && c.idle_ms >= config.dead_consumer_idle_ms) {
    cell.append(
      el(
        "button",
        {
          class: "danger small",
          "data-claim": c.name,
          onclick: async () => {
            const typed = window.prompt(`Hand the ${c.pending} pending entries of ${c.name} to the other consumers of ${group}? Type the consumer's name to confirm.`);
            if (typed === null) return;
            try {
              const done = await act(`api/streams/${enc(stream)}/groups/${enc(group)}/consumers/${enc(c.name)}/claim`, typed);
              statusLine.textContent = `Handed ${done.claimed} entries of ${c.name} to ${done.to}.`;
            } catch (error) {
              statusLine.textContent = `Not handed over: ${error.message}`;
            }
          },
        },
        "Hand over",
      ),
    );
  }
  return cell;
}

async function deadLettersView(stream) {
  const { items } = await api(`api/streams/${enc(stream)}/dead-letters?count=200`);
  const result = el("div", { id: "replay-result" });
  const replayAll =
    config.write && items.length
      ? el(
          "button",
          {
            class: "danger",
            id: "replay-all",
            onclick: async () => {
              const typed = window.prompt(`Replay every dead letter of ${stream}? Its consumers will handle them again. Type the stream's name to confirm.`);
              if (typed === null) return;
              try {
                const done = await act(`api/streams/${enc(stream)}/dead-letters/replay-all`, typed);
                result.replaceChildren(el("div", { class: "notice" }, `Replayed ${plural(done.replayed.length, "dead letter")}.`));
              } catch (error) {
                result.replaceChildren(errorBox(error, "Not replayed"));
              }
            },
          },
          "Replay all",
        )
      : null;
  return [
    el("h2", {}, `Dead letters of ${stream} (${items.length})`),
    replayAll,
    result,
    items.length
      ? table(
          ["Id", "Event", "Group", "Deliveries", "Failed at", "Reason"],
          items.map((d) => [
            el("a", { href: `#/dlq/${enc(stream)}/${enc(d.id)}` }, d.id),
            d.event_type || "–",
            d.group,
            d.deliveries,
            new Date(d.failed_at_ms).toLocaleString(),
            d.reason,
          ]),
          [3],
        )
      : el("p", { class: "muted" }, "No dead letters."),
  ];
}

async function deadLetterView(stream, id) {
  const letter = await api(`api/streams/${enc(stream)}/dead-letters/${enc(id)}`);
  const result = el("div", { id: "replay-result" });
  const parts = [
    el("h2", {}, `Dead letter ${letter.id}`),
    table(
      ["Field", "Value"],
      [
        ["Stream", letter.stream],
        ["Original entry", letter.original_id],
        ["Group / consumer", `${letter.group} / ${letter.consumer}`],
        ["Event", `${letter.event_type} ${letter.event_id}`],
        ["Correlation id", letter.correlation_id ? el("a", { href: `#/traces?value=${enc(letter.correlation_id)}` }, letter.correlation_id) : "–"],
        ["Deliveries", letter.deliveries],
        ["Failed at", new Date(letter.failed_at_ms).toLocaleString()],
        ["Reason", letter.reason],
      ],
    ),
    el("h3", {}, "Payload"),
    el("pre", {}, JSON.stringify(letter.payload, null, 2)),
  ];
  if (config.write) {
    parts.push(
      el(
        "button",
        {
          class: "danger",
          id: "replay",
          onclick: async () => {
            if (!window.confirm(`Replay dead letter ${letter.id} onto ${letter.stream}? Its consumers will handle it again.`)) return;
            try {
              await act(`api/streams/${enc(stream)}/dead-letters/${enc(id)}/replay`, letter.id);
              result.replaceChildren(el("div", { class: "notice" }, "Replayed."));
            } catch (error) {
              result.replaceChildren(errorBox(error, "Not replayed"));
            }
          },
        },
        "Replay",
      ),
      result,
    );
  }
  return parts;
}

async function tracesView(params) {
  const fields = [
    ["service", "Service", "text"],
    ["operation", "Operation", "text"],
    ["min_duration_ms", "Min duration (ms)", "number"],
    ["value", "Order / correlation id", "text"],
  ];
  const form = el(
    "form",
    {
      class: "search",
      onsubmit: (event) => {
        event.preventDefault();
        const query = new URLSearchParams();
        for (const [name, value] of new FormData(form)) if (value) query.set(name, value);
        location.hash = `#/traces?${query}`;
      },
    },
    fields.map(([name, label, type]) => el("label", {}, label, el("input", { name, type, value: params.get(name) || "" }))),
    el(
      "label",
      {},
      "Status",
      el(
        "select",
        { name: "status" },
        ["", "ok", "error"].map((s) => {
          const option = el("option", { value: s }, s || "any");
          if (params.get("status") === s) option.selected = true;
          return option;
        }),
      ),
    ),
    el("button", { type: "submit" }, "Search"),
  );
  const { items } = await api(`api/traces?${params}`);
  return [
    el("h2", {}, "Traces"),
    form,
    items.length
      ? table(
          ["Trace", "Root", "Services", "Spans", "Duration ms", "Started", "Status"],
          items.map((t) => [
            el("a", { href: `#/trace/${t.trace_id}` }, t.trace_id.slice(0, 16)),
            `${t.root_service}: ${t.root_name}`,
            t.services.join(", "),
            t.span_count,
            fixed(t.duration_ms, 2),
            new Date(t.start_ns / 1e6).toLocaleString(),
            el("span", { class: t.error ? "bad" : "ok" }, t.error ? "error" : "ok"),
          ]),
          [3, 4],
        )
      : el("p", { class: "muted" }, "No trace matches."),
  ];
}

function spanOrder(spans) {
  // Depth-first from the roots (and from spans whose parent is not in the store), children by start.
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const span of spans) {
    const parent = ids.has(span.parent_span_id) ? span.parent_span_id : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const ordered = [];
  const visit = (parent, depth) => {
    for (const span of (children.get(parent) || []).sort((a, b) => a.start_ns - b.start_ns)) {
      ordered.push([span, depth]);
      visit(span.span_id, depth + 1);
    }
  };
  visit("", 0);
  return ordered;
}

async function traceView(traceId) {
  const { trace, spans } = await api(`api/traces/${enc(traceId)}`);
  const total = Math.max(trace.duration_ms, 0.001);
  const detail = el("div", { class: "detail" });
  const rows = spanOrder(spans).map(([span, depth]) => {
    const left = (span.offset_ms / total) * 100;
    const width = Math.max((span.duration_ms / total) * 100, 0.2);
    const row = el(
      "div",
      { class: "span-row", "data-span": span.span_id },
      el(
        "div",
        { class: "span-label", style: `padding-left: ${0.5 + depth * 1.1}em`, title: `${span.service}: ${span.name}` },
        el("span", { class: "kind" }, span.kind),
        `${span.service}: ${span.name}`,
        span.links.length ? el("span", { class: "muted" }, ` ⤷ ${span.links.length} link(s)`) : null,
      ),
      el(
        "div",
        { class: "span-track" },
        el("div", { class: `span-bar ${span.kind} ${span.status === "error" ? "error" : ""}`, style: `left: ${left}%; width: ${width}%` }),
        // The duration after the bar, or before it when the bar ends near the right edge.
        el(
          "span",
          { class: "span-time", style: left + width > 85 ? `right: ${100 - left}%` : `left: ${left + width}%` },
          ` ${fixed(span.duration_ms, 2)} ms `,
        ),
      ),
    );
    row.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".span-row.selected")) other.classList.remove("selected");
      row.classList.add("selected");
      detail.replaceChildren(...spanDetail(span, trace.trace_id).filter((part) => part !== null));
    });
    return row;
  });
  return [
    el("h2", {}, `Trace ${trace.trace_id}`),
    el("p", { class: "muted" }, `${trace.root_service}: ${trace.root_name} · ${trace.span_count} spans · ${fixed(trace.duration_ms, 2)} ms · ${trace.services.join(", ")}`),
    el("div", { class: "waterfall" }, rows),
    detail,
  ];
}

function spanDetail(span, traceId) {
  const links = span.links.map((link) =>
    link.trace_id === traceId
      ? el("div", {}, "same trace, span ", el("code", {}, link.span_id))
      : el("div", {}, el("a", { href: `#/trace/${link.trace_id}` }, `trace ${link.trace_id}`), ` span ${link.span_id}`),
  );
  return [
    el("h3", {}, `${span.service}: ${span.name}`),
    table(
      ["Field", "Value"],
      [
        ["Span", span.span_id],
        ["Parent", span.parent_span_id || "(root)"],
        ["Instance", span.instance || "–"],
        ["Kind", span.kind],
        ["Status", `${span.status}${span.status_message ? `: ${span.status_message}` : ""}`],
        ["Starts at", `+${fixed(span.offset_ms, 2)} ms`],
        ["Duration", `${fixed(span.duration_ms, 3)} ms`],
        ["Links", links.length ? links : "none"],
      ],
    ),
    el("h3", {}, "Attributes"),
    table(["Key", "Value"], Object.entries(span.attributes).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v])),
    span.events.length ? el("h3", {}, "Events") : null,
    span.events.length ? el("pre", {}, JSON.stringify(span.events, null, 2)) : null,
  ];
}

const STATES = ["awaiting_stock", "awaiting_payment", "confirmed", "cancelled"];

async function sagasView(params) {
  const [counts, page] = await Promise.all([api("api/sagas/counts"), api(`api/sagas?${params}`)]);
  const filter = params.get("stuck") === "true" ? "stuck" : params.get("status") || "all";
  const chip = (label, hash, count, name) =>
    el("a", { href: hash, class: `chip ${filter === name ? "active" : ""} ${name === "stuck" && count ? "bad" : ""}` }, `${label} ${count}`);
  const total = Object.values(counts.by_status).reduce((a, b) => a + b, 0);
  const now = Date.now();
  const next = new URLSearchParams(params);
  if (page.next_cursor) next.set("cursor", page.next_cursor);
  return [
    el("h2", {}, "Sagas"),
    el(
      "p",
      { class: "chips" },
      chip("all", "#/sagas", total, "all"),
      STATES.map((state) => chip(state.replace("_", " "), `#/sagas?status=${state}`, counts.by_status[state] || 0, state)),
      chip("stuck", "#/sagas?stuck=true", counts.stuck, "stuck"),
    ),
    page.items.length
      ? table(
          ["Order", "Customer", "State", "Step deadline", "Total", "Placed", "Last step"],
          page.items.map((o) => {
            const late = o.step_deadline && Date.parse(o.step_deadline) < now;
            const last = o.history[o.history.length - 1];
            return [
              el("a", { href: `#/saga/${o.id}` }, o.id),
              o.customer_id,
              el("span", { class: o.status === "cancelled" ? "bad" : o.status === "confirmed" ? "ok" : "" }, o.status),
              o.step_deadline ? el("span", { class: late ? "bad" : "" }, `${new Date(o.step_deadline).toLocaleTimeString()}${late ? " (stuck)" : ""}`) : "–",
              money(o.total),
              new Date(o.created_at).toLocaleString(),
              last ? `${last.step}${last.detail ? `: ${last.detail}` : ""}` : "–",
            ];
          }),
        )
      : el("p", { class: "muted" }, "No order in this state."),
    page.next_cursor ? el("p", {}, el("a", { href: `#/sagas?${next}` }, "Older orders →")) : null,
  ];
}

const money = (m) => `${(m.amount / 100).toFixed(2)} ${m.currency}`;

async function sagaView(orderId) {
  const order = await api(`api/sagas/${enc(orderId)}`);
  const started = Date.parse(order.created_at);
  return [
    el("h2", {}, `Order ${order.id}`),
    table(
      ["Field", "Value"],
      [
        ["Customer", order.customer_id],
        ["State", order.status],
        ["Total", money(order.total)],
        ["Lines", order.lines.map((l) => `${l.quantity} × ${l.sku}`).join(", ")],
        ["Step deadline", order.step_deadline ? new Date(order.step_deadline).toLocaleString() : "– (final)"],
        ["Cancel reason", order.cancel_reason || "–"],
      ],
    ),
    el("h3", {}, "Timeline"),
    el(
      "ol",
      { class: "timeline" },
      order.history.map((step) =>
        el("li", {}, el("strong", {}, step.step), ` +${((Date.parse(step.at) - started) / 1000).toFixed(3)} s`, step.detail ? el("div", { class: "muted" }, step.detail) : null),
      ),
    ),
    el("p", {}, el("a", { id: "order-traces", href: `#/traces?value=${enc(order.id)}` }, "Traces of this order →")),
  ];
}

async function auditView() {
  const { items } = await api("api/audit");
  return [
    el("h2", {}, "Audit log"),
    items.length
      ? table(["When", "Who", "Action", "Target", "Outcome"], items.map((a) => [new Date(a.at).toLocaleString(), a.caller, a.action, a.target, a.outcome]))
      : el("p", { class: "muted" }, "No action yet."),
  ];
}

// --- routing

function route() {
  const [path, query] = (location.hash.slice(1) || "/services").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  switch (parts[0]) {
    case "streams": return { name: "streams", draw: streamsView, poll: true };
    case "dlq":
      return parts.length > 2
        ? { name: "streams", draw: () => deadLetterView(parts[1], parts[2]), poll: false }
        : { name: "streams", draw: () => deadLettersView(parts[1]), poll: true };
    case "traces": return { name: "traces", draw: () => tracesView(params), poll: false };
    case "trace": return { name: "traces", draw: () => traceView(parts[1]), poll: false };
    case "audit": return { name: "audit", draw: auditView, poll: true };
    case "sagas": return { name: "sagas", draw: () => sagasView(params), poll: true };
    case "saga": return { name: "sagas", draw: () => sagaView(parts[1]), poll: true };
    default: return { name: "services", draw: servicesView, poll: true };
  }
}

async function show() {
  clearTimeout(timer);
  const mine = ++generation;
  const current = route();
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === current.name);
  try {
    const parts = await current.draw();
    if (mine !== generation) return;
    view.replaceChildren(...parts.filter((part) => part !== null));
    statusLine.textContent = `Updated ${new Date().toLocaleTimeString()}${current.poll ? ` · every ${POLL_MS / 1000} s` : ""}`;
  } catch (error) {
    if (mine !== generation) return;
    view.replaceChildren(errorBox(error));
  }
  if (current.poll && mine === generation) timer = setTimeout(show, POLL_MS);
}

function loginView(reason) {
  const token = el("textarea", { id: "jwt", rows: 4, cols: 80, placeholder: "eyJ..." });
  const result = el("div", {});
  return [
    el("h2", {}, "Log in"),
    el("p", {}, "Open the one-time login link that ", el("code", {}, "stack up"), " printed (or the console logged), or paste a token the gateway accepts:"),
    token,
    el(
      "p",
      {},
      el(
        "button",
        {
          id: "login",
          onclick: async () => {
            try {
              await api("login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: token.value.trim() }) });
              location.reload();
            } catch (error) {
              result.replaceChildren(errorBox(error, "Not logged in"));
            }
          },
        },
        "Log in",
      ),
    ),
    result,
    el("p", { class: "muted" }, reason),
  ];
}

async function start() {
  try {
    config = await api("api/config");
  } catch (error) {
    if (error.status === 401) {
      view.replaceChildren(...loginView(error.message));
      return;
    }
    view.replaceChildren(errorBox(error));
    return;
  }
  const mode = document.getElementById("mode");
  mode.textContent = config.write ? "write mode" : "read-only";
  mode.classList.toggle("write", config.write);
  const who = document.getElementById("who");
  who.replaceChildren(
    `${config.session.caller} (${config.session.roles.join(", ") || "no role"}) `,
    config.session.csrf
      ? el("button", { id: "logout", class: "small", onclick: async () => { await api("logout", { method: "POST" }).catch(() => null); location.reload(); } }, "Log out")
      : "",
  );
  window.addEventListener("hashchange", show);
  await show();
}

start();
