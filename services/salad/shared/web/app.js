// salad's page: order salads, and follow every open order live from the `snapshot` events of /v1/events.
// No polling of the dashboard: EventSource reconnects by itself when the stream ends or breaks (a Shared
// restart, say). The client token, when Shared asks for one, comes from the form or from a `#token=...` link
// (a fragment never reaches a server) and stays in this browser's localStorage. `#order=ID` opens a salad's
// story, so a salad can be shared as a link.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const STATUS_LABEL = { pending: "waiting", in_progress: "in progress" };
  const FINAL = new Set(["completed", "failed"]);
  const RESTART_DELAY_MS = 3000; // after a refused stream (EventSource gives up), open a new one
  const TOKEN_KEY = "salad.token";
  const STALE_MARGIN_S = 5; // past the keep-alive's period, the page says it may be out of date
  const GONE_SHOWN_MS = 60_000; // a worker that vanished is shown gone this long, unless it comes back
  const CHARTS_EVERY_MS = 10_000;
  const HISTORY_PAGE = 10;
  // The server's rule for a fruit's name (contracts/orders.py FRUIT_PATTERN), and its words (shared/plain.py).
  const FRUIT_PATTERN = /^[\p{L}\p{N}][\p{L}\p{M}\p{N}_ .'-]*$/u;
  const NAME_RULE = "must start with a letter or a digit and hold only letters, digits, spaces and . ' - _";
  const mine = new Set(); // orders placed from this tab
  let source = null;
  let previous = null; // the last snapshot, to announce what changed
  let keepaliveEvery = 15; // seconds between the server's keep-alive events (it says so in each)
  let lastNews = Date.now(); // when the stream last said anything (a snapshot or a keep-alive)
  let limits = null; // what an order may hold, from GET /v1/limits
  let shownWorkers = []; // the live workers of the last snapshot
  const gone = new Map(); // name -> { at, silent }: workers that left the live list, for a minute
  let story = null; // the story shown: its order id and last answer
  let storyLoading = null;
  let chartsTimer = null;

  // --- Small helpers ---------------------------------------------------------------------------
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "—";
    if (value < 60) return `${value.toFixed(2)} s`;
    const minutes = Math.floor(value / 60);
    return `${minutes} min ${String(Math.round(value - minutes * 60)).padStart(2, "0")} s`;
  }

  const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "—");
  const between = (from, to) => (from && to ? seconds((Date.parse(to) - Date.parse(from)) / 1000) : "—");
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const orderLink = (id) => el("a", { href: `#order=${id}`, text: `#${id}` });

  function announce(messages) {
    if (messages.length) $("announcer").textContent = messages.join(". ") + ".";
  }

  function idempotencyKey() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http in a cluster too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function reason(body, status) {
    if (typeof body.message === "string") return body.message;
    if (typeof body.detail === "string") return body.detail;
    return `Shared answered ${status}`;
  }

  // A request to Shared with the token; a refused token opens the token form. Answers the parsed body, or
  // throws an Error whose message says why in words.
  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
    } catch (err) {
      throw new Error("Cannot reach Shared; try again in a moment.");
    }
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) askForToken("This needs the client token.");
    if (!response.ok) throw new Error(reason(body, response.status));
    return body;
  }

  // --- Access token and links ------------------------------------------------------------------
  const token = () => localStorage.getItem(TOKEN_KEY) || "";
  const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});
  const hashParams = () => new URLSearchParams(location.hash.slice(1));

  // Stores a `#token=` of the address and removes it from there (other parameters stay). True if it changed.
  function takeTokenFromLink() {
    const params = hashParams();
    if (!params.has("token")) return false;
    const changed = params.get("token") !== token();
    localStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    return changed;
  }

  function askForToken(why) {
    const panel = $("token-panel");
    $("token-reason").textContent = why;
    panel.classList.add("needed");
    panel.open = true;
    setConnection("offline", "Needs a token");
    $("token").focus();
  }

  function tokenChanged() {
    $("token-panel").open = false;
    $("token-panel").classList.remove("needed");
    $("form-error").hidden = true;
    connect();
  }

  function useToken(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    tokenChanged();
  }

  function followLink() {
    if (takeTokenFromLink()) tokenChanged(); // a new token in the address: used at once, no reload
    const id = Number(hashParams().get("order"));
    if (Number.isInteger(id) && id > 0) openStory(id);
    else closeStory();
  }

  // --- Live stream -----------------------------------------------------------------------------
  function setConnection(state, text) {
    const badge = $("connection");
    if (badge.dataset.state !== state) badge.dataset.state = state;
    if (badge.textContent !== text) badge.textContent = text;
  }

  function news() {
    lastNews = Date.now();
    setConnection("live", "Live");
  }

  function connect() {
    if (source) source.close();
    setConnection("connecting", "Connecting…");
    // EventSource cannot send headers: the token goes as `access_token` (RFC 6750), only on this request.
    const query = token() ? `?access_token=${encodeURIComponent(token())}` : "";
    const stream = new EventSource(`v1/events${query}`);
    source = stream;
    stream.addEventListener("open", () => {
      news();
      whenLive();
    });
    stream.addEventListener("snapshot", (event) => {
      news();
      render(JSON.parse(event.data));
    });
    stream.addEventListener("keepalive", (event) => {
      keepaliveEvery = JSON.parse(event.data).every || keepaliveEvery;
      news();
    });
    stream.addEventListener("error", () => {
      if (stream !== source) return;
      if (stream.readyState === EventSource.CLOSED) refused();
      else setConnection("reconnecting", "Reconnecting…");
    });
  }

  async function refused() {
    // The server answered the stream with an error, so EventSource stopped for good: find out why once.
    try {
      const response = await fetch("v1/dashboard", { headers: authHeaders() });
      if (response.status === 401 || response.status === 403) {
        askForToken(token() ? "Shared refused this token: enter the client token." : "This Shared needs its client token.");
        return;
      }
    } catch (err) {
      // unreachable: retry below
    }
    setConnection("offline", "Offline, retrying…");
    setTimeout(connect, RESTART_DELAY_MS);
  }

  // Connected (again): what the stream does not carry is read now.
  function whenLive() {
    if (!limits) api("v1/limits").then((body) => { limits = body; }).catch(() => {});
    if (story) loadStory();
    if (!historyLoaded) loadHistory();
    refreshCharts();
  }

  // Once a second: a stream that said nothing for longer than its keep-alive may be dead (a proxy or a
  // frozen server keeps the connection open): say so rather than show old news as live.
  function tick() {
    const silent = Math.round((Date.now() - lastNews) / 1000);
    const state = $("connection").dataset.state;
    if ((state === "live" || state === "stale") && silent > keepaliveEvery + STALE_MARGIN_S) {
      setConnection("stale", `No news for ${silent} s: this may be out of date`);
    }
    if (gone.size) renderWorkers();
  }

  // --- Rendering -------------------------------------------------------------------------------
  function render(snapshot) {
    $("master-away").hidden = !snapshot.master_unavailable;
    if (!snapshot.master_unavailable) noteGone(snapshot.workers);
    shownWorkers = snapshot.workers;
    renderOrders(snapshot);
    renderWorkers();
    renderCompleted(snapshot);
    if (previous) announce(changes(previous, snapshot));
    if (previous && previous.completed + previous.failed !== snapshot.completed + snapshot.failed) {
      setTimeout(refreshCharts, 1100); // a salad finished: its minute changed (Shared reads it once a second)
      if (pages.at === 0) loadHistory(); // the newest page of finished salads too
    }
    if (story && storyMayHaveChanged(snapshot)) loadStory();
    previous = snapshot;
  }

  // Workers that left the live list are shown gone for a while; one that comes back is live again.
  function noteGone(workers) {
    const now = Date.now();
    const live = new Set(workers.map((w) => w.name));
    for (const w of shownWorkers) {
      if (!live.has(w.name) && !gone.has(w.name)) gone.set(w.name, { at: now, silent: w.silent_for });
    }
    for (const [name, g] of gone) if (live.has(name) || now - g.at > GONE_SHOWN_MS) gone.delete(name);
  }

  // Seconds a worker has not been heard from, by name, for those that missed a check-in.
  const silences = () => new Map(shownWorkers.filter((w) => w.silent_for !== null && w.silent_for !== undefined)
    .map((w) => [w.name, w.silent_for]));

  function renderOrders({ open_orders: orders, open_total: total }) {
    const silent = silences();
    $("open-count").textContent = total;
    $("orders-empty").hidden = orders.length > 0;
    $("order-list").replaceChildren(...orders.map((o) => renderOrder(o, silent)));
    const more = $("orders-more");
    more.hidden = total <= orders.length;
    more.textContent = `and ${total - orders.length} more waiting`;
  }

  function renderOrder(order, silent) {
    const total = order.fruits.length;
    const { done, running } = order.counts;
    const head = el("div", { class: "salad-head" },
      el("h3", {}, el("a", { href: `#order=${order.id}`, text: `Salad #${order.id}` })),
      el("span", { class: `badge ${order.status}`, text: STATUS_LABEL[order.status] || order.status }),
      mine.has(order.id) ? el("span", { class: "badge yours", text: "yours" }) : null,
      el("span", { class: "when", text: `ordered ${clock(order.created_at)}` }),
      el("span", { class: "tally", text: `${done} / ${total}` }));
    const bar = el("div", {
      class: "bar", role: "progressbar", "aria-label": `Salad ${order.id}`,
      "aria-valuemin": "0", "aria-valuemax": String(total), "aria-valuenow": String(done),
      "aria-valuetext": `${done} of ${plural(total, "fruit")} done, ${running} running`,
    },
    el("span", { class: "fill done", style: `width:${(100 * done) / total}%` }),
    el("span", { class: "fill running", style: `width:${(100 * running) / total}%` }));
    const fruits = el("ul", { class: "fruits", "aria-label": `Fruits of salad ${order.id}` },
      ...order.fruits.map((f) => renderFruit(f, silent)));
    return el("li", { class: mine.has(order.id) ? "salad mine" : "salad", "data-order": String(order.id) },
      head, bar, fruits);
  }

  function renderFruit(fruit, silent) {
    let state = fruit.state;
    // Not heard from: its lease was not renewed lately, or its worker missed a check-in.
    const quiet = fruit.state === "running" ? fruit.silent_for ?? silent.get(fruit.worker) : undefined;
    if (fruit.state === "running" && fruit.worker) state = `running on ${fruit.worker}`;
    if (quiet !== undefined && quiet !== null) state += `, not heard from for ${quiet} s`;
    if (fruit.state === "done" && fruit.worker) state = `done by ${fruit.worker}`;
    const props = { class: "fruit", "data-state": fruit.state };
    if (quiet !== undefined && quiet !== null) props["data-silent"] = String(quiet);
    return el("li", props,
      el("span", { class: "name", text: fruit.fruit }),
      el("span", { class: "state", text: state }));
  }

  function renderWorkers() {
    const now = Date.now();
    const shown = [...shownWorkers.map((w) => ({ ...w, gone: false })),
      ...[...gone].map(([name, g]) => ({ name, slots: 0, busy: 0, gone: true,
        silent_for: Math.round((g.silent || 0) + (now - g.at) / 1000) }))];
    $("worker-count").textContent = shownWorkers.length;
    $("workers-empty").hidden = shown.length > 0;
    $("worker-list").replaceChildren(...shown.map((w) => {
      const unresponsive = !w.gone && w.silent_for !== null && w.silent_for !== undefined;
      let load = `${w.busy} of ${w.slots} slots busy`;
      if (unresponsive) load = `unresponsive, last seen ${w.silent_for} s ago`;
      if (w.gone) load = `gone, last seen ${w.silent_for} s ago`;
      const slots = Array.from({ length: w.slots }, (_, i) => el("span", { class: i < w.busy ? "slot busy" : "slot" }));
      const state = w.gone ? "gone" : unresponsive ? "unresponsive" : "live";
      return el("li", { class: "worker", "data-worker": w.name, "data-state": state },
        el("span", { class: "name", text: w.name }),
        el("span", { class: "load", text: load }),
        el("span", { class: "slots", "aria-hidden": "true" }, ...slots));
    }));
  }

  function renderCompleted({ completed, failed, recent }) {
    $("completed-count").textContent = completed;
    $("completed-label").textContent = completed === 1 ? "salad" : "salads";
    $("failed-count").hidden = failed === 0;
    $("failed-count").textContent = `${failed} failed`;
    $("recent-table").hidden = recent.length === 0;
    $("recent-empty").hidden = recent.length > 0;
    $("recent-list").replaceChildren(...recent.map((o) => el("tr", { "data-order": String(o.id) },
      el("td", {}, orderLink(o.id)),
      el("td", { text: String(o.fruits) }),
      o.status === "completed"
        ? el("td", { class: "time", text: seconds(o.preparation_time) })
        : el("td", { class: "failed", text: "failed", title: o.failure_reason || "" }),
      el("td", { text: clock(o.completed_at) }))));
  }

  function changes(before, after) {
    const messages = [];
    const known = new Set(before.recent.map((o) => o.id));
    for (const o of after.recent.filter((r) => !known.has(r.id)).reverse()) {
      messages.push(o.status === "completed"
        ? `Salad ${o.id} is ready in ${seconds(o.preparation_time)}`
        : `Salad ${o.id} failed${o.failure_reason ? `: ${o.failure_reason}` : ""}`);
    }
    const doneBefore = new Map(before.open_orders.map((o) => [o.id, o.counts.done]));
    for (const o of after.open_orders) {
      if (doneBefore.has(o.id) && o.counts.done > doneBefore.get(o.id)) {
        messages.push(`Salad ${o.id}: ${o.counts.done} of ${o.fruits.length} done`);
      }
    }
    return messages;
  }

  // --- A salad's story (#order=ID) -------------------------------------------------------------
  function openStory(id) {
    const changed = !story || story.id !== id;
    if (changed) {
      story = { id, answer: null };
      $("story-title").textContent = `Salad #${id}`;
      $("story-status").textContent = "";
      $("story-summary").textContent = "loading…";
      $("story-failed").hidden = true;
      $("story-note").textContent = "";
      $("story-gap").textContent = "";
      $("story-fruits").replaceChildren();
    }
    $("story").hidden = false;
    if (changed) {
      $("story").focus();
      loadStory();
    }
  }

  function closeStory() {
    story = null;
    $("story").hidden = true;
  }

  // While the salad is open, or comes back (requeued), each snapshot may have moved it on.
  function storyMayHaveChanged(snapshot) {
    const answer = story.answer;
    if (!answer || !FINAL.has(answer.order.status)) return true;
    return snapshot.open_orders.some((o) => o.id === story.id);
  }

  async function loadStory() {
    if (storyLoading) { // one read at a time; the latest change is read after it
      storyLoading.again = true;
      return;
    }
    const shown = story;
    storyLoading = { again: false };
    try {
      const answer = await api(`v1/orders/${shown.id}/story`);
      if (story === shown) {
        shown.answer = answer;
        renderStory(answer);
      }
    } catch (err) {
      if (story === shown) {
        $("story-summary").textContent = "";
        $("story-gap").textContent = err.message;
      }
    } finally {
      const again = storyLoading.again;
      storyLoading = null;
      if (again && story) loadStory();
    }
  }

  function renderStory({ order, fruits, fruits_unavailable: unavailable }) {
    $("story-status").className = `badge ${order.status}`;
    $("story-status").textContent = STATUS_LABEL[order.status] || order.status;
    const parts = [plural(order.fruits.length, "fruit"), `ordered ${clock(order.created_at)}`];
    if (order.status === "completed") parts.push(`ready in ${seconds(order.preparation_time)}`);
    if (order.status === "failed") parts.push(`failed ${clock(order.completed_at)}`);
    $("story-summary").textContent = parts.join(" · ");
    $("story-failed").hidden = order.status !== "failed";
    $("story-reason").textContent = `Why it failed: ${order.failure_reason || "no reason was recorded"}`;
    let note = "";
    if (unavailable) note = "Master cannot be reached: the fruits' story shows again when it answers.";
    else if (!fruits.length && order.status === "pending") note = "Waiting for a Master to take it.";
    else if (!fruits.length) note = "Its fruits' story is gone (finished salads' tasks are deleted after a while).";
    $("story-gap").textContent = note;
    $("story-fruits").replaceChildren(...fruits.flatMap(fruitStory));
  }

  function fruitStory(f) {
    const state = f.state === "failed" && f.error ? `failed: ${f.error}` : f.state;
    const row = el("tr", { class: "fruit-row", "data-position": String(f.position) },
      el("td", { text: f.fruit }),
      el("td", { class: "state", "data-state": f.state, text: state }),
      el("td", { text: f.worker || "—" }),
      el("td", { text: clock(f.queued_at) }),
      el("td", { text: clock(f.started_at) }),
      el("td", { text: clock(f.finished_at) }),
      el("td", { text: between(f.queued_at, f.started_at) }),
      el("td", { text: between(f.started_at, f.finished_at) }),
      el("td", { text: `${f.attempts} of ${f.max_attempts}` }));
    const attempts = f.failures.map((a) => el("tr", { class: "attempt" },
      el("td", { colSpan: 9, text: `Attempt ${a.attempt}${a.worker ? ` on ${a.worker}` : ""} `
        + `failed at ${clock(a.failed_at)}: ${a.error}` })));
    return [row, ...attempts];
  }

  async function requeue() {
    const button = $("requeue");
    const shown = story;
    button.disabled = true;
    try {
      const body = await api(`v1/orders/${shown.id}/requeue`, { method: "POST" });
      $("story-note").className = "message ok";
      $("story-note").textContent = `${plural(body.requeued, "fruit")} queued again: the salad goes on.`;
      loadStory();
    } catch (err) {
      $("story-note").className = "message error";
      $("story-note").textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  // --- Finished salads, a page at a time -------------------------------------------------------
  let historyLoaded = false;
  const pages = { before: [null], at: 0, next: null }; // the `before` of each page seen, for "Newer"

  async function loadHistory() {
    const form = $("history-form");
    const search = form.elements.search.value.trim();
    const query = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (form.elements.status.value) query.set("status", form.elements.status.value);
    if (search) query.set("fruit", search);
    const before = pages.before[pages.at];
    if (before) query.set("before", String(before));
    try {
      const body = await api(`v1/orders?${query}`);
      historyLoaded = true;
      pages.next = body.next ? new URL(body.next, location.href).searchParams.get("before") : null;
      renderHistory(body.items, search);
    } catch (err) {
      $("history-message").textContent = err.message;
    }
  }

  function renderHistory(items, search) {
    const first = pages.at * HISTORY_PAGE + 1;
    $("history-message").textContent = items.length
      ? `Salads ${first} to ${first + items.length - 1}${search ? ` holding ${search}` : ""}, newest first`
      : `No salad${search ? ` holding ${search}` : ""} here.`;
    $("history-table").hidden = items.length === 0;
    $("history-list").replaceChildren(...items.map((o) => el("tr", { "data-order": String(o.id) },
      el("td", {}, orderLink(o.id)),
      el("td", { class: "names", text: o.fruits.join(", ") }),
      el("td", { class: o.status === "failed" ? "failed" : "", text: STATUS_LABEL[o.status] || o.status }),
      el("td", { class: "time", text: seconds(o.preparation_time) }),
      el("td", { text: clock(o.completed_at) }))));
    $("history-newer").disabled = pages.at === 0;
    $("history-older").disabled = !pages.next;
  }

  function searchHistory(event) {
    event.preventDefault();
    const search = $("history-search").value.trim();
    const number = /^#?(\d+)$/.exec(search);
    if (number) { // a salad's number opens its story
      location.hash = `order=${number[1]}`;
      return;
    }
    if (search && !FRUIT_PATTERN.test(search)) { // it can be no fruit's name: say so rather than ask
      $("history-message").textContent = `Type a fruit's name, or a salad's #number: a name ${NAME_RULE}.`;
      return;
    }
    pages.before = [null];
    pages.at = 0;
    loadHistory();
  }

  function turnPage(step) {
    if (step > 0) {
      pages.before[pages.at + 1] = pages.next;
      pages.at += 1;
    } else if (pages.at > 0) {
      pages.at -= 1;
    }
    loadHistory();
  }

  // --- Charts (inline SVG, from GET /v1/charts) ------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  const CW = 320, CH = 110, PAD = { left: 30, right: 6, top: 8, bottom: 16 };

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    node.append(...children);
    return node;
  }

  // A frame with its axis and labels; `x` and `y` map a time (ms) and a value into it.
  function frame(label, from, to, top, unit) {
    const width = CW - PAD.left - PAD.right, height = CH - PAD.top - PAD.bottom;
    const x = (t) => PAD.left + (width * (t - from)) / (to - from);
    const y = (v) => PAD.top + height - (height * v) / (top || 1);
    const node = svg("svg", { viewBox: `0 0 ${CW} ${CH}`, role: "img", "aria-label": label },
      svg("line", { class: "axis", x1: PAD.left, x2: CW - PAD.right, y1: y(0), y2: y(0) }),
      svg("text", { x: 2, y: PAD.top + 8 }, `${round(top)}${unit}`),
      svg("text", { x: 2, y: y(0) }, `0`),
      svg("text", { x: PAD.left, y: CH - 3 }, `${Math.round((to - from) / 60000)} min ago`),
      svg("text", { x: CW - PAD.right, y: CH - 3, "text-anchor": "end" }, "now"));
    return { node, x, y };
  }

  const round = (v) => (v >= 10 ? Math.round(v) : Math.round(v * 10) / 10);

  // A line per series; with `dots`, each point marked too (a single minute is a dot, not an empty line).
  function lines(frameOf, series, points, dots = false) {
    for (const [cls, key] of series) {
      const shown = points.filter((p) => p[key] !== null && p[key] !== undefined);
      const coords = shown.map((p) => [frameOf.x(p.t).toFixed(1), frameOf.y(p[key]).toFixed(1)]);
      if (coords.length) frameOf.node.append(svg("polyline", { class: `line ${cls}`, points: coords.join(" ") }));
      if (dots) for (const [cx, cy] of coords) frameOf.node.append(svg("circle", { class: `dot ${cls}`, cx, cy, r: 2.5 }));
    }
  }

  function renderCharts(data) {
    // Minutes fill whole slots from the window's first minute; samples run up to now.
    const now = Date.parse(data.now), span = data.window_minutes * 60000;
    const from = Math.floor(now / 60000) * 60000 + 60000 - span, to = from + span;
    const minutes = data.minutes.map((m) => ({ ...m, t: Date.parse(m.minute) }));
    const perMinute = minutes.reduce((most, m) => Math.max(most, m.completed + m.failed), 0);
    const last = minutes.length ? minutes[minutes.length - 1] : null;
    const lastCount = last ? `${last.completed + last.failed} in the last minute with any` : "none";
    const rate = frame(`Salads per minute: ${lastCount}, at most ${perMinute}`, from, to, perMinute, "");
    const slot = (rate.x(from + 60000) - rate.x(from)) * 0.8;
    for (const m of minutes) {
      const done = rate.y(m.completed), all = rate.y(m.completed + m.failed);
      rate.node.append(svg("rect", { class: "col", x: rate.x(m.t), y: done, width: slot, height: rate.y(0) - done }));
      if (m.failed) {
        rate.node.append(svg("rect", { class: "col failed", x: rate.x(m.t), y: all, width: slot, height: done - all }));
      }
    }
    const slowest = minutes.reduce((most, m) => Math.max(most, m.p95 || 0), 0);
    const times = frame(`Completion time: p50 ${last && last.p50 !== null ? seconds(last.p50) : "none"}, `
      + `p95 ${last && last.p95 !== null ? seconds(last.p95) : "none"} in the last minute with salads`,
    from, to, slowest, " s");
    const middle = minutes.map((m) => ({ ...m, t: m.t + 30000 })); // a minute's figure at its middle
    lines(times, [["p50", "p50"], ["p95", "p95"]], middle, true);
    const load = data.load.map((s) => ({ ...s, t: Date.parse(s.at) }));
    const deepest = load.reduce((most, s) => Math.max(most, s.queued, s.slots), 0);
    const latest = load.length ? load[load.length - 1] : null;
    const loadText = latest ? `Queue depth ${latest.queued}, busy slots ${latest.busy} of ${latest.slots}`
      : "No sample yet";
    const depth = frame(loadText, now - span, now, deepest, "");
    lines(depth, [["queued", "queued"], ["busy", "busy"]], load);
    $("chart-rate").replaceChildren(rate.node);
    $("chart-times").replaceChildren(times.node);
    $("chart-load").replaceChildren(depth.node);
  }

  async function refreshCharts() {
    clearTimeout(chartsTimer);
    try {
      renderCharts(await api("v1/charts"));
    } catch (err) {
      // the next refresh tries again; the connection badge says what is wrong
    }
    chartsTimer = setTimeout(refreshCharts, CHARTS_EVERY_MS);
  }

  // --- Ordering --------------------------------------------------------------------------------
  function chosenFruits(form) {
    const picked = [...form.querySelectorAll('input[name="fruit"]:checked')].map((box) => box.value);
    const typed = form.elements.other.value.split(",").map((f) => f.trim()).filter(Boolean);
    return [...picked, ...typed];
  }

  function showSelection(form) {
    const fruits = chosenFruits(form);
    $("selection").textContent = fruits.length ? `${plural(fruits.length, "fruit")} chosen` : "No fruit chosen";
  }

  // What Shared would refuse, in its words (shared/plain.py), checked before sending: names first, then
  // lengths and the count against Shared's limits (once read), as Shared checks them.
  function problems(fruits) {
    if (!fruits.length) return ["Choose at least one fruit."];
    const found = fruits.flatMap((name, i) => (FRUIT_PATTERN.test(name) ? []
      : [`Fruit ${i + 1} (${JSON.stringify(name)}) ${NAME_RULE}.`]));
    if (found.length || !limits) return found;
    if (fruits.length > limits.max_fruits) {
      return [`A salad holds at most ${limits.max_fruits} fruits; this one has ${fruits.length}.`];
    }
    const long = fruits.findIndex((name) => [...name.normalize("NFC")].length > limits.max_fruit_length);
    return long < 0 ? [] : [`Fruit ${long + 1} is too long: at most ${limits.max_fruit_length} characters.`];
  }

  function showError(text) {
    $("form-error").textContent = text;
    $("form-error").hidden = false;
  }

  async function order(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const fruits = chosenFruits(form);
    $("form-error").hidden = true;
    $("form-ok").textContent = "";
    const refused = problems(fruits);
    if (refused.length) {
      showError(refused.join(" "));
      return;
    }
    $("order-button").disabled = true;
    try {
      const body = await api("v1/orders", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey() },
        body: JSON.stringify({ fruits }),
      });
      mine.add(body.id);
      form.reset();
      showSelection(form);
      $("form-ok").replaceChildren(`Salad `, orderLink(body.id), ` ordered: ${fruits.join(", ")}.`);
    } catch (err) {
      showError(err.message);
    } finally {
      $("order-button").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("order-form");
    form.addEventListener("submit", order);
    form.addEventListener("input", () => {
      showSelection(form);
      $("form-error").hidden = true; // the order changed: what was wrong with it may no longer be
    });
    $("token-form").addEventListener("submit", useToken);
    $("requeue").addEventListener("click", requeue);
    $("story-close").addEventListener("click", (event) => {
      event.preventDefault();
      history.pushState(null, "", location.pathname + location.search);
      closeStory();
    });
    $("history-form").addEventListener("submit", searchHistory);
    $("history-status").addEventListener("change", searchHistory);
    $("history-older").addEventListener("click", () => turnPage(1));
    $("history-newer").addEventListener("click", () => turnPage(-1));
    window.addEventListener("hashchange", followLink);
    takeTokenFromLink();
    connect();
    followLink();
    setInterval(tick, 1000);
  });
})();
