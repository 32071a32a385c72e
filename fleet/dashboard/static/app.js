/* fleet dashboard: fills each page from /api/... and keeps it current over /api/stream.
 *
 * No framework and no build step: every page is a function that fetches its JSON and
 * renders it with DOM calls (text is never parsed as HTML). Live updates arrive as
 * server-sent events; a page refetches what it shows when a change concerns it, at most
 * every REFRESH_MS. Actions POST JSON with the page's CSRF token.
 */
"use strict";

(function () {
  const body = document.body;
  const PREFIX = body.dataset.prefix || "";
  const CSRF = body.dataset.csrf;
  const PAGE = body.dataset.page;
  const ARG = body.dataset.argument;
  const STATES = (body.dataset.states || "").split(",");
  let REFRESH_MS = 700;  // at most one refetch per this many ms (per page below)
  const content = document.getElementById("content");

  // -- helpers ----------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else el.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function url(path) { return PREFIX + path; }

  function link(path, text) { return h("a", {href: url(path)}, text); }

  async function request(path, options) {
    const response = await fetch(url(path), Object.assign({credentials: "same-origin"},
                                                          options || {}));
    if (response.status === 401) {
      location.assign(url("/login?next=" + encodeURIComponent(location.pathname)));
      throw new Error("log in first");
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = {error: response.statusText}; }
    if (!response.ok) {
      const error = new Error((data && data.error) || response.statusText);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function getJSON(path) {
    return request(path, {headers: {"Accept": "application/json"}});
  }

  function post(path, payload) {
    return request(path, {method: "POST", body: JSON.stringify(payload || {}),
                          headers: {"Content-Type": "application/json",
                                    "X-CSRF-Token": CSRF}});
  }

  function flash(text, kind) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.className = "flash " + (kind || "info");
    box.hidden = false;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function fmtTime(epoch) {
    if (epoch === null || epoch === undefined) return "-";
    const d = new Date(epoch * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    if (seconds < 0.001) return (seconds * 1e6).toFixed(0) + " µs";
    if (seconds < 1) return (seconds * 1000).toFixed(1) + " ms";
    if (seconds < 90) return seconds.toFixed(2) + " s";
    if (seconds < 5400) return (seconds / 60).toFixed(1) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }

  function badge(state) {
    return h("span", {class: "state state-" + String(state || "unknown").toLowerCase()},
             state || "?");
  }

  function table(headers, rows, empty, attrs) {
    const head = h("tr", {}, headers.map((name) => h("th", {}, name)));
    const lines = rows.length ? rows.map((cells) => h("tr", {}, cells.map((cell) =>
      h("td", {class: typeof cell === "number" ? "num" : null}, cell))))
      : [h("tr", {}, h("td", {colspan: headers.length, class: "muted"}, empty || "none"))];
    return h("table", attrs || {}, h("thead", {}, head), h("tbody", {}, lines));
  }

  function json(value) {
    return h("pre", {class: "json"}, JSON.stringify(value, null, 2));
  }

  function section(title, ...children) {
    return h("section", {}, h("h2", {}, title), ...children);
  }

  function setTitle(text) {
    document.getElementById("title").textContent = text;
    document.title = text + " · fleet dashboard";
  }

  function fail(error) {
    flash(error.message, "error");
  }

  // -- live updates -----------------------------------------------------------------------

  let refresher = null;      // () => Promise: what the page refetches
  let interested = () => true;  // (message) => bool: does this change concern the page?
  let due = false, running = false, lastRun = 0;

  function schedule() {
    due = true;
    if (running) return;
    const wait = Math.max(0, lastRun + REFRESH_MS - Date.now());
    setTimeout(async () => {
      if (!due || running || !refresher) return;
      due = false; running = true; lastRun = Date.now();
      try { await refresher(); } catch (e) { fail(e); }
      running = false;
      if (due) schedule();
    }, wait);
  }

  function connect() {
    const indicator = document.getElementById("live");
    const source = new EventSource(url("/api/stream"));
    source.onopen = () => { indicator.textContent = "live"; indicator.className = "live on"; };
    source.onerror = () => {
      indicator.textContent = "reconnecting…"; indicator.className = "live off";
    };
    source.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.kind === "hello") return;
      if (message.kind === "reload" || interested(message)) schedule();
    };
  }

  // -- overview ---------------------------------------------------------------------------

  function nodeTable(nodes) {
    return table(
      ["Node", "State", "PID", "Host", "Uptime", "Load", "Pool", "Active", "Processed",
       "Queues", "Last heartbeat"],
      nodes.map((n) => [
        link("/nodes/" + encodeURIComponent(n.node), n.node), badge(n.state),
        n.pid ?? "-", n.host || "-", fmtDuration(n.uptime),
        (n.loadavg || []).map((x) => x.toFixed(2)).join(" ") || "-",
        n.concurrency ?? "-", n.active ?? "-", n.processed ?? "-",
        (n.queues || []).join(", "),
        n.last_heartbeat ? fmtTime(n.last_heartbeat) + ` (${fmtDuration(n.seconds_since_heartbeat)} ago)` : "-",
      ]), "No node is registered with the broker.", {id: "nodes"});
  }

  function queueTable(queues) {
    return table(
      ["Queue", "Ready", "Scheduled", "Reserved", "Consumers", ""],
      queues.map((q) => [q.queue, q.ready, q.scheduled, q.reserved, q.consumers,
        h("button", {class: "danger small", "data-queue": q.queue,
                     onclick: () => purgeQueue(q.queue, q.ready + q.scheduled)}, "Purge")]),
      "No queues yet: nothing was sent and no node consumes.", {id: "queues"});
  }

  async function purgeQueue(queue, waiting) {
    if (!confirm(`Purge queue ${queue}? This deletes every waiting message (${waiting} now). ` +
                 "There is no undo.")) return;
    try {
      const done = await post("/api/queues/" + encodeURIComponent(queue) + "/purge",
                              {confirm: queue});
      flash(`Purged ${done.removed} message(s) from ${queue}` +
            (done.reserved_left ? ` (${done.reserved_left} reserved by nodes left alone)` : "") +
            ".", "ok");
      schedule();
    } catch (e) { fail(e); }
  }

  async function overview() {
    const data = await getJSON("/api/overview");
    const counts = h("div", {class: "counts", id: "state-counts"},
      STATES.map((state) => h("a", {class: "count", href: url("/tasks?state=" + state)},
                              badge(state), h("b", {}, String(data.tasks[state] || 0)))));
    const online = data.nodes.filter((n) => n.state === "online").length;
    content.replaceChildren(
      section(`Nodes (${online} online)`, nodeTable(data.nodes)),
      section("Queues", queueTable(data.queues)),
      section(`Tasks (${data.tasks_recorded} recorded, at most ${data.max_tasks})`, counts));
  }

  // -- task list --------------------------------------------------------------------------

  const taskQuery = new URLSearchParams(location.search);

  async function taskFilters() {
    const known = await getJSON("/api/task-filters");
    const choice = (name, values, label) => h("label", {}, label, " ",
      h("select", {name, id: "filter-" + name, onchange: filterChanged},
        h("option", {value: ""}, "any"),
        values.map((v) => h("option", {value: v, selected: taskQuery.get(name) === v}, v))));
    const search = h("form", {class: "search", onsubmit: (event) => {
      event.preventDefault();
      const id = document.getElementById("search-id").value.trim();
      if (id) location.assign(url("/tasks/" + encodeURIComponent(id)));
    }}, h("input", {id: "search-id", placeholder: "task id", size: 34}),
      h("button", {type: "submit"}, "Find"));
    return h("div", {class: "filters"}, choice("state", STATES, "State"),
             choice("name", known.names, "Task"), choice("node", known.nodes, "Node"), search);
  }

  function filterChanged(event) {
    const select = event.target;
    if (select.value) taskQuery.set(select.name, select.value);
    else taskQuery.delete(select.name);
    taskQuery.delete("before"); taskQuery.delete("after");
    history.replaceState(null, "", location.pathname + "?" + taskQuery.toString());
    schedule();
  }

  function pageTo(key, value) {
    taskQuery.delete("before"); taskQuery.delete("after");
    if (key) taskQuery.set(key, value);
    history.replaceState(null, "", location.pathname + "?" + taskQuery.toString());
    schedule();
  }

  async function taskRows() {
    const data = await getJSON("/api/tasks?" + taskQuery.toString());
    const rows = data.tasks.map((t) => [
      link("/tasks/" + encodeURIComponent(t.id), t.id), t.name || "?", badge(t.state),
      t.node ? link("/nodes/" + encodeURIComponent(t.node), t.node) : "-",
      fmtTime(t.received), fmtTime(t.started), fmtDuration(t.runtime)]);
    const pager = h("div", {class: "pager"},
      h("button", {disabled: data.newer === null && !taskQuery.get("before") && !taskQuery.get("after"),
                   onclick: () => pageTo(null)}, "Newest"),
      h("button", {id: "page-newer", disabled: data.newer === null,
                   onclick: () => pageTo("after", data.newer)}, "‹ Newer"),
      h("button", {id: "page-older", disabled: data.older === null,
                   onclick: () => pageTo("before", data.older)}, "Older ›"),
      h("span", {class: "muted"}, ` ${data.total} matching task(s)`));
    document.getElementById("task-table").replaceChildren(
      table(["Task id", "Name", "State", "Node", "Received", "Started", "Runtime"], rows,
            "No task matches (task events come from nodes started with -E, or after " +
            "enable_events; the dashboard enables them itself unless told not to).",
            {id: "tasks"}), pager);
  }

  async function tasks() {
    content.replaceChildren(await taskFilters(), h("div", {id: "task-table"}));
    await taskRows();
  }

  // -- task detail ------------------------------------------------------------------------

  async function taskAction(path, payload, question, done) {
    if (question && !confirm(question)) return;
    try {
      const reply = await post("/api/tasks/" + encodeURIComponent(ARG) + path, payload);
      flash(done(reply), "ok");
      schedule();
    } catch (e) { fail(e); }
  }

  function taskActions(detail) {
    const signal = h("select", {id: "terminate-signal"},
                     ["TERM", "KILL"].map((s) => h("option", {value: s}, s)));
    return h("div", {class: "actions", id: "task-actions"},
      h("button", {id: "revoke", class: "danger", onclick: () => taskAction(
        "/revoke", {terminate: false}, `Revoke task ${ARG}? Nodes will not run it.`,
        () => `Task ${ARG} revoked.`)}, "Revoke"),
      h("span", {class: "group"}, h("button", {id: "terminate", class: "danger",
        onclick: () => taskAction("/revoke", {terminate: true, signal: signal.value},
          `Terminate task ${ARG} with SIG${signal.value}?`,
          (r) => `Task ${ARG} terminated: ` + Object.entries(r.replies)
            .map(([n, t]) => `${n}: ${t}`).join("; "))}, "Terminate"), " with ", signal),
      h("button", {id: "resend", disabled: !detail.can_resend,
                   title: detail.can_resend ? "send it again with the same arguments" :
                     "the dashboard does not know its arguments",
                   onclick: () => taskAction("/resend", {}, null, (r) => {
                     setTimeout(() => location.assign(url("/tasks/" + r.new_id)), 800);
                     return `Sent again as ${r.new_id}.`;
                   })}, "Send again"));
  }

  function relatives(detail) {
    const items = [];
    if (detail.parent) {
      items.push(h("li", {}, detail.parent.relation + ": ",
        link("/tasks/" + encodeURIComponent(detail.parent.id), detail.parent.id),
        ` ${detail.parent.name || ""} `, detail.parent.state ? badge(detail.parent.state) : ""));
    }
    if (detail.root_id && detail.root_id !== ARG) {
      items.push(h("li", {}, "workflow root: ",
                   link("/tasks/" + encodeURIComponent(detail.root_id), detail.root_id)));
    }
    if (detail.group_id) items.push(h("li", {}, "group: " + detail.group_id));
    for (const child of detail.children) {
      items.push(h("li", {}, "child: ", link("/tasks/" + encodeURIComponent(child.id), child.id),
                   ` ${child.name || ""} `, badge(child.state)));
    }
    return items.length ? h("ul", {id: "workflow"}, items)
      : h("p", {class: "muted", id: "workflow"}, "No parent or children known.");
  }

  function resultPart(detail) {
    const r = detail.result;
    if (r.state === "SUCCESS") return section("Result", json(r.result));
    if (r.exc_type || r.traceback) {
      return section("Error",
        h("p", {class: "error", id: "exception"}, `${r.exc_type}: ${r.exc_message || ""}`),
        h("pre", {class: "traceback", id: "traceback"}, r.traceback || "(no traceback)"));
    }
    const t = detail.task;
    if (t.exception) return section("Error", h("p", {class: "error", id: "exception"}, t.exception));
    if (r.result !== null && r.result !== undefined) {  // a state of its own: its meta
      return section(`Progress (${r.state})`, h("div", {id: "task-info"}, json(r.result)));
    }
    return section("Result", h("p", {class: "muted"}, `Not stored yet (state ${r.state}).`));
  }

  async function taskDetail() {
    let detail;
    try {
      detail = await getJSON("/api/tasks/" + encodeURIComponent(ARG));
    } catch (e) {
      if (e.status === 404) {
        content.replaceChildren(h("p", {class: "muted"}, e.message));
        return;
      }
      throw e;
    }
    const t = detail.task;
    setTitle(`Task ${detail.name || ""} ${ARG}`);
    const facts = table(["", ""], [
      ["State", h("span", {id: "task-state"}, badge(detail.state))],
      ["Name", detail.name || "?"],
      ["Node", detail.node ? link("/nodes/" + encodeURIComponent(detail.node), detail.node) : "-"],
      ["Queue", t.queue || "-"], ["Retries", detail.retries ?? "-"],
      ["Sent", fmtTime(t.sent)], ["Received", fmtTime(t.received)],
      ["Started", fmtTime(t.started)], ["Finished", fmtTime(t.finished)],
      ["Runtime", fmtDuration(t.runtime)], ["ETA", fmtTime(t.eta)],
      ["Expires", fmtTime(t.expires)]], "", {class: "facts"});
    content.replaceChildren(
      taskActions(detail), section("Task", facts),
      section("Arguments", h("h3", {}, "args"), json(t.args ?? null),
              h("h3", {}, "kwargs"), json(t.kwargs ?? null)),
      resultPart(detail), section("Workflow", relatives(detail)));
  }

  // -- node detail ------------------------------------------------------------------------

  function actionForm(command) {
    const inputs = command.arguments.map((arg) => h("label", {}, arg.name + " ",
      h("input", {name: arg.name, "data-type": arg.type, placeholder: arg.required ? arg.type :
                  String(arg.default ?? ""), required: arg.required, title: arg.help,
                  size: arg.type === "str" ? 28 : 6})));
    const form = h("form", {class: "action", id: "action-" + command.name, onsubmit: async (event) => {
      event.preventDefault();
      const payload = {};
      for (const input of form.querySelectorAll("input")) {
        if (input.value.trim() === "") continue;
        const type = input.dataset.type;
        payload[input.name] = type === "int" || type === "float" ? Number(input.value)
          : input.value.trim();
      }
      if (command.name === "shutdown" && !confirm(`Shut ${ARG} down? Running tasks finish first.`)) return;
      try {
        const reply = await post(`/api/nodes/${encodeURIComponent(ARG)}/${command.name}`, payload);
        flash(`${ARG}: ${reply.ok}`, "ok");
        schedule();
      } catch (e) { fail(e); }
    }}, h("button", {type: "submit", class: command.name === "shutdown" ? "danger" : null,
                     title: command.help}, command.name.replace("_", " ")), ...inputs);
    return form;
  }

  function jobs(list, empty) {
    return table(["Task id", "Name", "Args", "Started", "Child"], (list || []).map((item) => {
      const job = item.request || item;
      return [link("/tasks/" + encodeURIComponent(job.id), job.id), job.name,
              JSON.stringify(job.args), fmtTime(job.time_start || item.eta),
              job.worker_pid ?? "-"];
    }), empty);
  }

  async function nodeData() {
    const data = await getJSON("/api/nodes/" + encodeURIComponent(ARG));
    const a = data.answers;
    const missing = Object.entries(data.errors).map(([q, why]) => `${q}: ${why}`);
    const conf = Object.entries(a.conf || {}).map(([k, v]) => [k, JSON.stringify(v)]);
    document.getElementById("node-data").replaceChildren(
      missing.length ? h("p", {class: "flash error"}, "No answer to " + missing.join("; ")) : "",
      section("Node", nodeTable([data.node])),
      section(`Active (${(a.active || []).length})`, jobs(a.active, "Nothing runs.")),
      section(`Reserved (${(a.reserved || []).length})`, jobs(a.reserved, "Nothing prefetched.")),
      section(`Scheduled (${(a.scheduled || []).length})`, jobs(a.scheduled, "No ETA task held.")),
      section("Registered tasks", h("ul", {id: "registered"},
        (a.registered || []).map((line) => h("li", {}, line)))),
      section(`Revoked (${(a.revoked || []).length})`, h("ul", {},
        (a.revoked || []).slice(0, 200).map((id) => h("li", {}, id)))),
      section("Stats", json(a.stats || null)),
      section("Settings (changed from the defaults)", table(["Setting", "Value"], conf)));
  }

  async function nodeDetail() {
    setTitle("Node " + ARG);
    const commands = await getJSON("/api/node-commands");
    content.replaceChildren(
      section("Actions", h("div", {class: "actions", id: "node-actions"}, commands.map(actionForm))),
      h("div", {id: "node-data"}, h("p", {class: "muted"}, "Asking the node…")));
    await nodeData();
  }

  // -- charts -----------------------------------------------------------------------------

  let charts = [];
  let chartWindow = new URLSearchParams(location.search).get("window") || "1h";

  function chart(target, title, times, series) {
    const width = Math.max(320, target.clientWidth || 900);
    const colours = ["#2b6cb0", "#2f855a", "#b7791f", "#6b46c1", "#319795", "#c53030"];
    const options = {title, width, height: 220, scales: {x: {time: true}},
      series: [{}, ...series.map((s, i) => ({label: s.label,
                                              stroke: s.colour || colours[i % colours.length],
                                              width: 2, spanGaps: true}))],
      axes: [{}, {size: 60}]};
    const chartObj = new uPlot(options, [times, ...series.map((s) => s.values)], target);
    charts.push(chartObj);
  }

  async function chartData() {
    const data = await getJSON("/api/charts?window=" + chartWindow);
    for (const c of charts) c.destroy();
    charts = [];
    const perMinute = 60 / data.bucket_seconds;
    const rate = (values) => values.map((n) => n * perMinute);
    const box = document.getElementById("chart-box");
    box.replaceChildren(h("div", {id: "chart-throughput", class: "chart"}),
                        h("div", {id: "chart-failures", class: "chart"}),
                        h("div", {id: "chart-queues", class: "chart"}));
    chart(document.getElementById("chart-throughput"), "Throughput (tasks per minute)",
          data.buckets, [{label: "succeeded", colour: "#2f855a",
                          values: rate(data.counts.succeeded)},
                         {label: "received", colour: "#2b6cb0",
                          values: rate(data.counts.received)}]);
    chart(document.getElementById("chart-failures"), "Failures (per minute)", data.buckets,
          [{label: "failed", colour: "#c53030", values: rate(data.counts.failed)},
           {label: "retried", colour: "#b7791f", values: rate(data.counts.retried)},
           {label: "revoked", colour: "#6b46c1", values: rate(data.counts.revoked)}]);
    const queues = Object.entries(data.queues);
    chart(document.getElementById("chart-queues"), "Queue length (ready messages)",
          data.queue_times, queues.length ? queues.map(([name, values]) => ({label: name, values}))
            : [{label: "no samples yet", values: data.queue_times.map(() => null)}]);
  }

  async function chartsPage() {
    const windows = ["15m", "1h", "6h", "24h"];
    content.replaceChildren(
      h("div", {class: "filters"}, "Window ", windows.map((w) => h("button", {
        class: w === chartWindow ? "selected" : null, "data-window": w, onclick: () => {
          chartWindow = w;
          history.replaceState(null, "", location.pathname + "?window=" + w);
          for (const b of document.querySelectorAll("[data-window]")) {
            b.className = b.dataset.window === w ? "selected" : "";
          }
          schedule();
        }}, w))),
      h("div", {id: "chart-box"}));
    await chartData();
  }

  // -- beat -------------------------------------------------------------------------------

  async function beat() {
    const entries = await getJSON("/api/beat");
    content.replaceChildren(table(
      ["Name", "Task", "Schedule", "Last run (UTC)", "Next run (UTC)", "Arguments"],
      entries.map((e) => [e.name, e.task, e.schedule, e.last_run || "-", e.next_run,
                          JSON.stringify({args: e.args, kwargs: e.kwargs})]),
      "No periodic tasks: set beat_schedule in the app, or [beat.schedule.NAME] in " +
      "fleet.toml (and start the dashboard with -A).", {id: "beat"}));
  }

  // -- start ------------------------------------------------------------------------------

  const pages = {
    overview: {load: overview, refresh: overview},
    tasks: {load: tasks, refresh: taskRows},
    task: {load: taskDetail, refresh: taskDetail,
           interested: (m) => (m.tasks || []).some((t) => t.id === ARG) || m.task_count > 50},
    node: {load: nodeDetail, refresh: nodeData, every: 3000,
           interested: (m) => (m.nodes || []).includes(ARG) ||
             (m.tasks || []).some((t) => t.node === ARG)},
    charts: {load: chartsPage, refresh: chartData, interested: () => false},
    beat: {load: beat, refresh: beat, interested: () => false},
  };

  const current = pages[PAGE];
  const nav = document.querySelector(`[data-nav="${PAGE === "task" ? "tasks" : PAGE}"]`);
  if (nav) nav.className = "active";
  if (!body.dataset.logins) document.getElementById("logout").hidden = true;
  if (current) {
    refresher = current.refresh;
    REFRESH_MS = current.every || REFRESH_MS;
    interested = current.interested || interested;
    current.load().catch(fail);
    connect();
    if (PAGE === "beat") setInterval(schedule, 30000);
    if (PAGE === "charts") setInterval(schedule, 10000);
  }
})();
