// node/admin/ui/app.ts — browser side: the web UI's router and pages (programs, counts per state, actor lists, one actor with time travel, cluster).
/// <reference lib="dom" />
import type { ActorPage, ActorView, IndexLag, ProgramStats, StateNotice } from "../../../protocol/records.js";
import type { Statechart, StatechartNode } from "../statechart.js";
import type { StepView } from "../steps.js";
import { ApiError, get, live, post, setToken, token } from "./api.js";
import { drawChart, type DrawnChart } from "./chart.js";
import { formatTime, formatValue, h, json, relative, statePaths } from "./dom.js";

interface ProgramRow {
  name: string;
  version: string | null;
  description: string | null;
  loaded: boolean;
  actors: number;
  statuses: Record<string, number>;
}

interface ClusterPage {
  clustered: boolean;
  self: string | null;
  shards: number;
  replicas: number;
  nodes: { name: string; instance?: string; host?: string; pid?: number; startedAt?: number; draining?: boolean; owns: number[] }[];
  owners: { shard: number; node: string | null; epoch: number; since: number; reason: string; from: string | null; pinned: string | null }[];
  handoffs: { shard: number; from: string | null; to: string | null; epoch: number; at: number; reason: string }[];
}

const main = document.getElementById("main")!;
let page = new AbortController();

const fmtN = (n: number) => n.toLocaleString("en-US");
const enc = encodeURIComponent;

function setMain(...children: (Node | string)[]): void {
  main.replaceChildren(...children);
}

function pill(status: string): HTMLElement {
  return h("span", { class: `pill ${status}` }, status);
}

function errorBox(err: unknown): HTMLElement {
  if (err instanceof ApiError && err.status === 401) return tokenForm(err.message);
  const msg = err instanceof ApiError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
  return h("div", { class: "error" }, msg);
}

function tokenForm(message: string): HTMLElement {
  const input = h("input", { type: "password", placeholder: "bearer token", autocomplete: "off", size: 40 });
  return h(
    "form",
    {
      class: "card token",
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        setToken(input.value.trim() || null);
        void route();
      },
    },
    h("h2", {}, "This node needs a token"),
    h("p", { class: "muted" }, message, " Paste a read or admin token (FLOWMETAL_READ_TOKEN / FLOWMETAL_ADMIN_TOKEN). It is kept in this browser only."),
    input,
    " ",
    h("button", { type: "submit" }, "Use token"),
  );
}

/** Runs `fn` at most once per `ms`, trailing call included. */
function throttle(fn: () => void, ms: number): () => void {
  let last = 0;
  let timer: number | undefined;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      fn();
    } else {
      timer ??= window.setTimeout(() => {
        timer = undefined;
        last = Date.now();
        fn();
      }, wait);
    }
  };
}

// ---------------------------------------------------------------- programs

async function programsPage(signal: AbortSignal): Promise<void> {
  const body = h("tbody");
  const table = h("table", { class: "grid" }, h("thead", {}, h("tr", {}, h("th", {}, "program"), h("th", {}, "version"), h("th", { class: "num" }, "actors"), h("th", { class: "num" }, "active"), h("th", { class: "num" }, "done"), h("th", {}, "description"))), body);
  setMain(h("h1", {}, "Programs"), h("section", { class: "card" }, table));
  const load = async () => {
    const r = await get<{ programs: ProgramRow[] }>("/api/programs");
    body.replaceChildren(
      ...r.programs.map((p) =>
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/programs/${enc(p.name)}` }, p.name), p.loaded ? "" : h("span", { class: "muted" }, " (not loaded here)")),
          h("td", {}, p.version ?? "-"),
          h("td", { class: "num" }, fmtN(p.actors)),
          h("td", { class: "num" }, fmtN(p.statuses.active ?? 0)),
          h("td", { class: "num" }, fmtN(p.statuses.done ?? 0)),
          h("td", { class: "muted" }, p.description ?? ""),
        ),
      ),
    );
  };
  await load();
  live("", throttle(() => void load().catch(() => undefined), 1000), signal);
}

// ---------------------------------------------------------------- one program: counts per state

function chartPaths(root: StatechartNode): { path: string; depth: number; type: string }[] {
  const out: { path: string; depth: number; type: string }[] = [];
  const walk = (n: StatechartNode, depth: number) => {
    for (const c of n.states) {
      if (c.type !== "history") out.push({ path: c.path, depth, type: c.type });
      walk(c, depth + 1);
    }
  };
  walk(root, 0);
  return out;
}

async function programPage(program: string, signal: AbortSignal): Promise<void> {
  const [chart, stats] = await Promise.all([get<Statechart>(`/api/programs/${enc(program)}`).catch((e: unknown) => (e instanceof ApiError && e.status === 404 ? undefined : Promise.reject(e))), get<ProgramStats>(`/api/programs/${enc(program)}/stats`)]);
  const rows = h("tbody");
  const totals = h("div", { class: "totals" });
  const chartBox = h("div", { class: "chart-box" }, chart ? h("p", { class: "muted" }, "laying out…") : h("p", { class: "muted" }, "this node does not run the program: no statechart"));
  setMain(
    h("h1", {}, program, chart ? h("span", { class: "version" }, `v${chart.version}`) : ""),
    chart?.description ? h("p", { class: "muted" }, chart.description) : "",
    h("div", { class: "cols" },
      h("section", { class: "card narrow" }, h("h2", {}, "Actors by state"), totals, h("table", { class: "grid counts", "data-testid": "counts" }, h("thead", {}, h("tr", {}, h("th", {}, "state"), h("th", { class: "num" }, "actors"), h("th", {}, ""))), rows), h("p", {}, h("a", { href: `#/programs/${enc(program)}/actors` }, "all actors →"))),
      h("section", { class: "card chart-card" }, h("h2", {}, "Statechart"), chartBox),
    ),
  );
  const paths = chart ? chartPaths(chart.root) : [];
  let drawn: DrawnChart | undefined;
  const render = (st: ProgramStats) => {
    const known = new Set(paths.map((p) => p.path));
    const extra = Object.keys(st.states).filter((p) => !known.has(p)).map((p) => ({ path: p, depth: p.split(".").length - 1, type: "atomic" }));
    const max = Math.max(1, ...Object.values(st.states));
    rows.replaceChildren(
      ...[...paths, ...extra].map((p) => {
        const n = st.states[p.path] ?? 0;
        const name = p.path.split(".").pop() ?? p.path;
        return h(
          "tr",
          { class: n ? "" : "zero", "data-state": p.path },
          h("td", { style: `padding-left:${12 + p.depth * 18}px` }, h("a", { href: `#/programs/${enc(program)}/actors?state=${enc(p.path)}` }, name), p.type === "final" ? h("span", { class: "muted" }, " final") : ""),
          h("td", { class: "num count" }, fmtN(n)),
          h("td", { class: "barcell" }, h("div", { class: "bar", style: `width:${Math.round((n / max) * 100)}%` })),
        );
      }),
    );
    totals.replaceChildren(
      h("span", {}, h("b", {}, fmtN(st.total)), " actors"),
      ...Object.entries(st.statuses).map(([k, v]) => h("span", {}, pill(k), " ", fmtN(v))),
      h("span", { class: `muted lagnote ${st.lag.records > 0 ? "behind" : ""}` }, `index lag: ${fmtN(st.lag.records)} record(s)`),
    );
    drawn?.counts(st.states);
  };
  render(stats);
  if (chart) {
    try {
      drawn = await drawChart(chart, (path) => (location.hash = `#/programs/${enc(program)}/actors?state=${enc(path)}`));
      chartBox.replaceChildren(drawn.svg);
      drawn.counts(stats.states);
    } catch (err) {
      chartBox.replaceChildren(errorBox(err));
    }
  }
  live(`program=${enc(program)}`, throttle(() => void get<ProgramStats>(`/api/programs/${enc(program)}/stats`).then(render, () => undefined), 500), signal);
}

// ---------------------------------------------------------------- actor list

async function actorsPage(program: string, params: URLSearchParams, signal: AbortSignal): Promise<void> {
  const state = params.get("state") ?? "";
  const status = params.get("status") ?? "";
  const after = params.get("after") ?? "";
  const pageNo = Number(params.get("page") ?? "1") || 1;
  const limit = 50;
  const [chart, stats] = await Promise.all([get<Statechart>(`/api/programs/${enc(program)}`).catch(() => undefined), get<ProgramStats>(`/api/programs/${enc(program)}/stats`)]);
  const options = new Set([...(chart ? chartPaths(chart.root).map((p) => p.path) : []), ...Object.keys(stats.states)]);
  const stateSel = h("select", { name: "state", "data-testid": "state-filter" }, h("option", { value: "" }, "any state"), ...[...options].map((p) => h("option", { value: p, selected: p === state }, `${p} (${fmtN(stats.states[p] ?? 0)})`)));
  const statusSel = h("select", { name: "status" }, ...["", "active", "done", "error", "stopped"].map((v) => h("option", { value: v, selected: v === status }, v || "any status")));
  const go = (extra: Record<string, string>) => {
    const q = new URLSearchParams();
    if (stateSel.value) q.set("state", stateSel.value);
    if (statusSel.value) q.set("status", statusSel.value);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    location.hash = `#/programs/${enc(program)}/actors${q.size ? `?${q}` : ""}`;
  };
  stateSel.addEventListener("change", () => go({}));
  statusSel.addEventListener("change", () => go({}));
  const body = h("tbody");
  const info = h("span", { class: "muted" });
  const nav = h("div", { class: "pager" });
  setMain(
    h("h1", {}, h("a", { href: `#/programs/${enc(program)}` }, program), " actors", state ? h("span", { class: "version" }, `in ${state}`) : ""),
    h("section", { class: "card" },
      h("div", { class: "filters" }, stateSel, statusSel, info),
      h("table", { class: "grid", "data-testid": "actor-list" }, h("thead", {}, h("tr", {}, h("th", {}, "actor"), h("th", {}, "state"), h("th", {}, "status"), h("th", { class: "num" }, "step"), h("th", {}, "updated"))), body),
      nav,
    ),
  );
  const load = async () => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (state) q.set("state", state);
    if (status) q.set("status", status);
    if (after) q.set("after", after);
    const t0 = performance.now();
    const r = await get<ActorPage>(`/api/programs/${enc(program)}/actors?${q}`);
    const ms = Math.round(performance.now() - t0);
    const from = (pageNo - 1) * limit + 1;
    info.textContent = r.total ? `${fmtN(from)}–${fmtN(from + r.actors.length - 1)} of ${fmtN(r.total)} · ${ms} ms` : "no actors match";
    body.replaceChildren(
      ...r.actors.map((a) =>
        h("tr", {},
          h("td", {}, h("a", { href: `#/actors/${enc(a.program)}/${enc(a.key)}` }, a.key)),
          h("td", {}, formatValue(a.value)),
          h("td", {}, pill(a.status)),
          h("td", { class: "num" }, fmtN(a.step)),
          h("td", { title: formatTime(a.updated) }, relative(a.updated)),
        ),
      ),
    );
    nav.replaceChildren(
      pageNo > 1 ? h("button", { onclick: () => go({}) }, "first page") : "",
      pageNo > 1 ? h("button", { onclick: () => history.back() }, "← previous") : "",
      r.next ? h("button", { onclick: () => go({ after: r.next!, page: String(pageNo + 1) }) }, "next →") : "",
    );
  };
  await load();
  live(`program=${enc(program)}`, throttle(() => void load().catch(() => undefined), 1000), signal);
}

// ---------------------------------------------------------------- one actor, with time travel

async function actorPage(program: string, key: string, signal: AbortSignal): Promise<void> {
  const base = `/api/actors/${enc(program)}/${enc(key)}`;
  const [view, chart] = await Promise.all([get<ActorView>(base), get<Statechart>(`/api/programs/${enc(program)}`).catch(() => undefined)]);
  let latest = view;
  const steps = new Map<number, StepView>();
  let next: number | undefined;
  const loadHistory = async (max = 2000) => {
    let after = next ?? 0;
    for (;;) {
      const page = await get<{ steps: StepView[]; next?: number }>(`${base}/history?limit=500${after ? `&after=${after}` : ""}`);
      for (const st of page.steps) steps.set(st.step, st);
      next = page.next;
      if (page.next === undefined || steps.size >= max) return;
      after = page.next;
    }
  };
  await loadHistory();

  let selected = latest.step;
  let following = true;
  const head = h("div", { class: "actor-head" });
  const chartBox = h("div", { class: "chart-box" }, h("p", { class: "muted" }, chart ? "laying out…" : "this node does not run the program: no statechart"));
  const detail = h("div", { class: "detail", "data-testid": "detail" });
  const slider = h("input", { type: "range", min: 1, max: latest.step, value: latest.step, "data-testid": "slider", "aria-label": "step" });
  const stepLabel = h("span", { class: "steplabel", "data-testid": "step-label" });
  const timeline = h("tbody");
  const sendBox = h("form", { class: "send" });

  const select = async (n: number, follow: boolean) => {
    selected = Math.max(1, Math.min(latest.step, n));
    following = follow && selected === latest.step;
    await renderSelection();
  };
  const btn = (label: string, title: string, fn: () => void, testid: string) => h("button", { type: "button", title, onclick: fn, "data-testid": testid }, label);
  const controls = h("div", { class: "controls" },
    btn("first", "first step", () => void select(1, false), "first"),
    btn("◀", "previous step", () => void select(selected - 1, false), "prev"),
    slider,
    btn("▶", "next step", () => void select(selected + 1, false), "next"),
    btn("latest", "latest step (follow live)", () => void select(latest.step, true), "last"),
    stepLabel,
  );
  slider.addEventListener("input", () => void select(Number(slider.value), false));
  document.addEventListener("keydown", (ev) => {
    if (signal.aborted || (ev.target as HTMLElement)?.tagName === "TEXTAREA" || (ev.target as HTMLElement)?.tagName === "INPUT") return;
    if (ev.key === "ArrowLeft") void select(selected - 1, false);
    if (ev.key === "ArrowRight") void select(selected + 1, false);
  }, { signal });

  setMain(
    h("h1", {}, h("a", { href: `#/programs/${enc(program)}` }, program), "/", key),
    head,
    h("div", { class: "cols" }, h("section", { class: "card chart-card" }, h("h2", {}, "Statechart"), chartBox)),
    h("div", { class: "cols" },
      h("section", { class: "card narrow" }, detail),
      h("section", { class: "card wide" }, h("h2", {}, "Timeline"), controls,
        h("div", { class: "timeline-wrap" }, h("table", { class: "grid timeline", "data-testid": "timeline" }, h("thead", {}, h("tr", {}, h("th", { class: "num" }, "step"), h("th", {}, "time"), h("th", {}, "event in"), h("th", {}, "state after"), h("th", {}, "effects out"))), timeline))),
    ),
    h("section", { class: "card" }, h("h2", {}, "Send an event"), sendBox),
  );

  let drawn: DrawnChart | undefined;
  const stepAt = async (n: number): Promise<StepView | undefined> => {
    let st = steps.get(n);
    if (!st) {
      st = await get<StepView>(`${base}/steps/${n}`).catch(() => undefined);
      if (st) steps.set(n, st);
    }
    return st;
  };

  const renderHead = () => {
    head.replaceChildren(
      pill(latest.status),
      h("span", {}, "now in ", h("b", { "data-testid": "current-state" }, formatValue(latest.value))),
      h("span", { class: "muted" }, `step ${fmtN(latest.step)} · version ${latest.version} · updated ${formatTime(latest.updated)}`),
    );
  };

  const timersAndCalls = (timers: StepView["timers"], calls: StepView["calls"], now: number) =>
    h("div", {},
      h("h3", {}, "Pending timers"),
      Object.keys(timers).length
        ? h("ul", { class: "plain" }, ...Object.entries(timers).map(([id, t]) => h("li", {}, h("code", {}, id), " due ", h("span", { title: formatTime(t.dueMs) }, relative(t.dueMs, now)), h("span", { class: "muted" }, ` (set at step ${t.gen})`))))
        : h("p", { class: "muted" }, "none"),
      h("h3", {}, "Pending calls"),
      Object.keys(calls).length
        ? h("ul", { class: "plain" }, ...Object.entries(calls).map(([id, c]) => h("li", {}, h("code", {}, c.fn), " as ", h("code", {}, id), h("span", { class: "muted" }, ` since step ${c.step} · ${c.callId}`))))
        : h("p", { class: "muted" }, "none"),
    );

  const renderSelection = async () => {
    const st = await stepAt(selected);
    const atLatest = selected === latest.step;
    slider.max = String(latest.step);
    slider.value = String(selected);
    stepLabel.textContent = `step ${fmtN(selected)} of ${fmtN(latest.step)}${atLatest && following ? " · live" : ""}`;
    const value = atLatest ? latest.value : st?.value;
    drawn?.highlight(new Set(statePaths(value)));
    detail.replaceChildren(
      h("h2", {}, atLatest ? "Now" : `At step ${fmtN(selected)}`),
      h("p", {}, "state ", h("b", { "data-testid": "shown-state" }, formatValue(value)), " ", pill(atLatest ? latest.status : (st?.status ?? "?"))),
      st ? h("p", { class: "muted" }, `${st.kind} `, h("code", {}, st.event.type), ` → ${st.outcome}${st.error ? ` (${st.error.code})` : ""} · ${formatTime(st.time)}`) : "",
      h("h3", {}, "Context"),
      h("pre", { class: "json" }, json(atLatest ? latest.context : st?.context)),
      atLatest ? timersAndCalls(latest.timers, latest.calls, Date.now()) : st ? timersAndCalls(st.timers, st.calls, st.time) : "",
    );
    for (const tr of timeline.children) tr.classList.toggle("selected", (tr as HTMLElement).dataset.step === String(selected));
    timeline.querySelector("tr.selected")?.scrollIntoView({ block: "nearest" });
  };

  const renderTimeline = () => {
    const rows = [...steps.values()].sort((a, b) => a.step - b.step);
    timeline.replaceChildren(
      ...rows.map((st) =>
        h("tr", { "data-step": st.step, class: st.outcome === "ok" ? "" : `outcome-${st.outcome}`, onclick: () => void select(st.step, st.step === latest.step) },
          h("td", { class: "num" }, String(st.step)),
          h("td", { title: formatTime(st.time) }, new Date(st.time).toLocaleTimeString(undefined, { hour12: false })),
          h("td", {}, h("span", { class: `kind ${st.kind}` }, st.kind), " ", h("code", { title: json(st.event, 2000) }, st.event.type)),
          h("td", {}, "→ ", h("b", {}, formatValue(st.value)), st.outcome === "ok" ? "" : h("span", { class: "muted" }, ` (${st.outcome})`)),
          h("td", {}, st.effects.length ? st.effects.map((e) => e.kind === "emit" || e.kind === "send" ? `${e.kind} ${e.event.type}` : e.kind === "call" ? `call ${e.fn}` : e.kind === "schedule" || e.kind === "unschedule" ? `${e.kind} ${e.timer}` : `cancel ${e.fn}`).join(", ") : h("span", { class: "muted" }, "-")),
        ),
      ),
      next !== undefined ? h("tr", {}, h("td", { colspan: 5 }, h("button", { type: "button", onclick: () => void loadHistory(steps.size + 2000).then(() => { renderTimeline(); void renderSelection(); }) }, "load more steps"))) : "",
    );
  };

  // Sending an event (needs the admin scope when tokens are on).
  const eventInput = h("textarea", { rows: 3, cols: 60, spellcheck: false, "data-testid": "event-input" }, '{ "type": "" }');
  const sendResult = h("span", { class: "muted" });
  sendBox.append(eventInput, h("div", {}, h("button", { type: "submit", "data-testid": "send" }, "Send"), " ", sendResult));
  sendBox.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void (async () => {
      try {
        const event = JSON.parse(eventInput.value) as unknown;
        const r = await post<{ seq: number; duplicate: boolean }>(`${base}/events`, { event });
        sendResult.textContent = `accepted (inbox seq ${r.seq}${r.duplicate ? ", duplicate" : ""})`;
      } catch (err) {
        sendResult.textContent = err instanceof ApiError ? `${err.code}: ${err.message}` : String((err as Error).message);
      }
    })();
  });

  renderHead();
  renderTimeline();
  await renderSelection();
  if (chart) {
    try {
      drawn = await drawChart(chart);
      chartBox.replaceChildren(drawn.svg);
      await renderSelection();
    } catch (err) {
      chartBox.replaceChildren(errorBox(err));
    }
  }

  const refresh = throttle(() => {
    void (async () => {
      latest = await get<ActorView>(base);
      await loadHistory(steps.size + 500);
      renderHead();
      renderTimeline();
      if (following) selected = latest.step;
      await renderSelection();
    })().catch(() => undefined);
  }, 150);
  live(`actor=${enc(`${program}/${key}`)}`, (event, data) => {
    if (event === "step" && (data as StateNotice).step > latest.step) refresh();
  }, signal);
}

// ---------------------------------------------------------------- cluster

function hue(name: string | null): string {
  if (!name) return "var(--muted-bg)";
  let x = 0;
  for (const c of name) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${x % 360} 60% 82%)`;
}

async function clusterPage(signal: AbortSignal): Promise<void> {
  const box = h("div");
  setMain(h("h1", {}, "Cluster"), box);
  const load = async () => {
    const c = await get<ClusterPage>("/api/cluster");
    const idx = await get<{ actors: number; lag: IndexLag }>("/api/index");
    box.replaceChildren(
      h("p", { class: "muted" }, c.clustered ? `${c.nodes.length} node(s), ${c.shards} shards, ${c.replicas} replica(s)` : `a single node (not clustered), ${c.shards} shards`, ` · this UI is served by ${c.self ?? "a client"}`, ` · index: ${fmtN(idx.actors)} actors, lag ${fmtN(idx.lag.records)} record(s)`),
      h("div", { class: "cols" },
        h("section", { class: "card" }, h("h2", {}, "Nodes"),
          h("table", { class: "grid", "data-testid": "nodes" }, h("thead", {}, h("tr", {}, h("th", {}, "node"), h("th", {}, "host"), h("th", {}, "pid"), h("th", {}, "started"), h("th", { class: "num" }, "shards"))),
            h("tbody", {}, ...c.nodes.map((n) => h("tr", {},
              h("td", {}, h("span", { class: "swatch", style: `background:${hue(n.name)}` }), n.name, n.name === c.self ? h("span", { class: "muted" }, " (this node)") : "", n.draining ? h("span", { class: "pill error" }, "draining") : ""),
              h("td", {}, n.host ?? "-"), h("td", {}, n.pid ? String(n.pid) : "-"), h("td", {}, n.startedAt ? relative(n.startedAt) : "-"), h("td", { class: "num" }, String(n.owns.length))))))),
        h("section", { class: "card" }, h("h2", {}, "Shards"),
          h("div", { class: "shards", "data-testid": "shards" }, ...c.owners.map((o) => h("div", { class: "shard", style: `background:${hue(o.node)}`, title: `shard ${o.shard}: ${o.node ?? "no owner"} · epoch ${o.epoch} · ${o.reason}${o.pinned ? ` · pinned to ${o.pinned}` : ""}` }, h("b", {}, String(o.shard)), h("small", {}, o.node ?? "—"), h("small", {}, `e${o.epoch}`))))),
      ),
      h("section", { class: "card" }, h("h2", {}, "Recent handoffs"),
        c.handoffs.length
          ? h("table", { class: "grid" }, h("thead", {}, h("tr", {}, h("th", {}, "when"), h("th", { class: "num" }, "shard"), h("th", {}, "from"), h("th", {}, "to"), h("th", { class: "num" }, "epoch"), h("th", {}, "reason"))),
              h("tbody", {}, ...c.handoffs.map((x) => h("tr", {}, h("td", { title: formatTime(x.at) }, relative(x.at)), h("td", { class: "num" }, String(x.shard)), h("td", {}, x.from ?? "-"), h("td", {}, x.to ?? "-"), h("td", { class: "num" }, String(x.epoch)), h("td", {}, x.reason)))))
          : h("p", { class: "muted" }, "none yet")),
    );
  };
  await load();
  const t = window.setInterval(() => void load().catch(() => undefined), 2000);
  signal.addEventListener("abort", () => clearInterval(t));
}

// ---------------------------------------------------------------- router

async function lagBadge(): Promise<void> {
  const el = document.getElementById("lag");
  if (!el) return;
  try {
    const r = await get<{ actors: number; lag: IndexLag }>("/api/index");
    el.textContent = `${fmtN(r.actors)} actors indexed · lag ${fmtN(r.lag.records)}`;
    el.className = `lag ${r.lag.records > 1000 ? "behind" : ""}`;
  } catch {
    el.textContent = "";
  }
}

async function route(): Promise<void> {
  page.abort();
  page = new AbortController();
  const signal = page.signal;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("here", (a as HTMLAnchorElement).hash === `#/${parts[0] ?? ""}` || ((a as HTMLAnchorElement).hash === "#/" && parts[0] === "programs"));
  try {
    if (parts.length === 0) await programsPage(signal);
    else if (parts[0] === "programs" && parts.length === 2) await programPage(parts[1]!, signal);
    else if (parts[0] === "programs" && parts[2] === "actors") await actorsPage(parts[1]!, new URLSearchParams(query), signal);
    else if (parts[0] === "actors" && parts.length === 3) await actorPage(parts[1]!, parts[2]!, signal);
    else if (parts[0] === "cluster") await clusterPage(signal);
    else setMain(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "programs")));
    document.body.dataset.ready = "true";
  } catch (err) {
    if (!signal.aborted) setMain(errorBox(err));
  }
}

window.addEventListener("hashchange", () => void route());
if (token() === null) setToken(null);
void route();
void lagBadge();
window.setInterval(() => void lagBadge(), 5000);
