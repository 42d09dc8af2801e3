// salad's page: order salads, and follow every open order live from the `snapshot` events of /v1/events.
// No polling: EventSource reconnects by itself when the stream ends or breaks (a Shared restart, say).
// The client token, when Shared asks for one, comes from the form or from a `#token=...` link (a fragment
// never reaches a server) and stays in this browser's localStorage.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const STATUS_LABEL = { pending: "waiting", in_progress: "in progress" };
  const RESTART_DELAY_MS = 3000; // after a refused stream (EventSource gives up), open a new one
  const TOKEN_KEY = "salad.token";
  const mine = new Set(); // orders placed from this tab
  let source = null;
  let previous = null; // the last snapshot, to announce what changed

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
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function announce(messages) {
    if (messages.length) $("announcer").textContent = messages.join(". ") + ".";
  }

  function idempotencyKey() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http in a cluster too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // --- Access token ----------------------------------------------------------------------------
  const token = () => localStorage.getItem(TOKEN_KEY) || "";
  const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

  function takeTokenFromLink() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (!params.has("token")) return;
    localStorage.setItem(TOKEN_KEY, params.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function askForToken(why) {
    const panel = $("token-panel");
    $("token-reason").textContent = why;
    panel.classList.add("needed");
    panel.open = true;
    setConnection("offline", "Needs a token");
    $("token").focus();
  }

  function useToken(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    $("token-panel").open = false;
    $("token-panel").classList.remove("needed");
    $("form-error").hidden = true;
    connect();
  }

  // --- Live stream -----------------------------------------------------------------------------
  function setConnection(state, text) {
    const badge = $("connection");
    if (badge.dataset.state === state) return;
    badge.dataset.state = state;
    badge.textContent = text;
  }

  function connect() {
    if (source) source.close();
    setConnection("connecting", "Connecting…");
    // EventSource cannot send headers: the token goes as `access_token` (RFC 6750), only on this request.
    const query = token() ? `?access_token=${encodeURIComponent(token())}` : "";
    const stream = new EventSource(`v1/events${query}`);
    source = stream;
    stream.addEventListener("open", () => setConnection("live", "Live"));
    stream.addEventListener("snapshot", (event) => render(JSON.parse(event.data)));
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

  // --- Rendering -------------------------------------------------------------------------------
  function render(snapshot) {
    renderOrders(snapshot);
    renderWorkers(snapshot.workers);
    renderCompleted(snapshot);
    if (previous) announce(changes(previous, snapshot));
    previous = snapshot;
  }

  function renderOrders({ open_orders: orders, open_total: total }) {
    $("open-count").textContent = total;
    $("orders-empty").hidden = orders.length > 0;
    $("order-list").replaceChildren(...orders.map(renderOrder));
    const more = $("orders-more");
    more.hidden = total <= orders.length;
    more.textContent = `and ${total - orders.length} more waiting`;
  }

  function renderOrder(order) {
    const total = order.fruits.length;
    const { done, running } = order.counts;
    const head = el("div", { class: "salad-head" },
      el("h3", { text: `Salad #${order.id}` }),
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
      ...order.fruits.map(renderFruit));
    return el("li", { class: mine.has(order.id) ? "salad mine" : "salad", "data-order": String(order.id) },
      head, bar, fruits);
  }

  function renderFruit(fruit) {
    let state = fruit.state;
    if (fruit.state === "running" && fruit.worker) state = `running on ${fruit.worker}`;
    if (fruit.state === "done" && fruit.worker) state = `done by ${fruit.worker}`;
    return el("li", { class: "fruit", "data-state": fruit.state },
      el("span", { class: "name", text: fruit.fruit }),
      el("span", { class: "state", text: state }));
  }

  function renderWorkers(workers) {
    $("worker-count").textContent = workers.length;
    $("workers-empty").hidden = workers.length > 0;
    $("worker-list").replaceChildren(...workers.map((w) => {
      const slots = Array.from({ length: w.slots }, (_, i) => el("span", { class: i < w.busy ? "slot busy" : "slot" }));
      return el("li", { class: "worker", "data-worker": w.name },
        el("span", { class: "name", text: w.name }),
        el("span", { class: "load", text: `${w.busy} of ${w.slots} slots busy` }),
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
      el("td", { text: `#${o.id}` }),
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

  function reason(body, status) {
    if (typeof body.message === "string") return body.message;
    if (typeof body.detail === "string") return body.detail;
    return `Shared answered ${status}`;
  }

  async function order(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const error = $("form-error");
    const fruits = chosenFruits(form);
    error.hidden = true;
    $("form-ok").textContent = "";
    if (!fruits.length) {
      error.textContent = "Choose at least one fruit, or type one.";
      error.hidden = false;
      return;
    }
    $("order-button").disabled = true;
    try {
      const response = await fetch("v1/orders", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey(), ...authHeaders() },
        body: JSON.stringify({ fruits }),
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 401 || response.status === 403) askForToken("Ordering needs the client token.");
      if (!response.ok) throw new Error(reason(body, response.status));
      mine.add(body.id);
      form.reset();
      showSelection(form);
      $("form-ok").textContent = `Salad #${body.id} ordered: ${fruits.join(", ")}.`;
    } catch (err) {
      error.textContent = err instanceof TypeError ? "Cannot reach Shared; try again in a moment." : err.message;
      error.hidden = false;
    } finally {
      $("order-button").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("order-form");
    form.addEventListener("submit", order);
    form.addEventListener("input", () => showSelection(form));
    $("token-form").addEventListener("submit", useToken);
    takeTokenFromLink();
    connect();
  });
})();
