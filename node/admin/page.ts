// node/admin/page.ts — the web UI's HTML shell and stylesheet (the scripts are compiled from node/admin/ui/).

/** The single page: everything else is drawn by /ui/app.js from the admin API. */
export const indexHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Flowmetal</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/style.css">
<script src="/ui/vendor/elk-api.js" defer></script>
<script type="module" src="/ui/app.js"></script>
</head>
<body>
<header class="top">
  <a class="brand" href="#/">flowmetal</a>
  <nav><a href="#/">Programs</a><a href="#/cluster">Cluster</a></nav>
  <span id="lag" class="lag"></span>
</header>
<main id="main"><p class="muted">Loading…</p></main>
</body>
</html>
`;

/** The stylesheet, served as /ui/style.css. */
export const styleCss = `
:root {
  --fg: #1c2430; --muted: #6b7685; --bg: #f5f7fa; --card: #fff; --line: #e2e7ee; --muted-bg: #eef1f5;
  --accent: #2563eb; --accent-bg: #dbe7ff; --ok: #15803d; --ok-bg: #dcfce7; --warn: #b45309; --warn-bg: #fef3c7;
  --bad: #b91c1c; --bad-bg: #fee2e2;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
header.top { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #111827; color: #e5e7eb; }
header.top .brand { color: #fff; font-weight: 700; letter-spacing: .02em; font-size: 16px; }
header.top nav a { color: #cbd5e1; margin-right: 16px; padding: 4px 0; }
header.top nav a.here { color: #fff; border-bottom: 2px solid #60a5fa; }
header.top .lag { margin-left: auto; color: #94a3b8; font-size: 12px; }
header.top .lag.behind { color: #fbbf24; }
main { padding: 20px 24px 40px; max-width: 1500px; margin: 0 auto; }
h1 { font-size: 22px; margin: 4px 0 12px; font-weight: 650; }
h1 a { color: inherit; }
h2 { font-size: 15px; margin: 0 0 10px; font-weight: 650; }
h3 { font-size: 13px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.version { font-size: 13px; font-weight: 500; color: var(--muted); margin-left: 10px; }
.muted { color: var(--muted); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px; margin-bottom: 16px; min-width: 0; }
.cols { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
.cols > .card { flex: 1 1 380px; }
.cols > .card.wide { flex: 3 1 560px; }
.cols > .card.narrow { flex: 1 1 340px; max-width: 560px; }
.cols > .card.chart-card { flex: 1 1 auto; max-width: 100%; }
table.grid { border-collapse: collapse; width: 100%; }
table.grid th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; border-bottom: 1px solid var(--line); padding: 6px 8px; }
table.grid td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
table.grid tr:last-child td { border-bottom: none; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
table.counts tr.zero td { color: var(--muted); }
table.counts tr.zero a { color: var(--muted); }
td.barcell { width: 40%; }
.bar { height: 10px; border-radius: 5px; background: var(--accent); min-width: 2px; margin-top: 5px; opacity: .75; }
tr.zero .bar { background: var(--line); }
.totals { display: flex; gap: 14px; flex-wrap: wrap; align-items: center; margin-bottom: 10px; }
.lagnote.behind { color: var(--warn); }
.pill { display: inline-block; padding: 0 8px; border-radius: 9px; font-size: 12px; line-height: 18px; background: var(--muted-bg); color: var(--muted); }
.pill.active { background: var(--accent-bg); color: var(--accent); }
.pill.done { background: var(--ok-bg); color: var(--ok); }
.pill.error, .pill.stopped { background: var(--bad-bg); color: var(--bad); }
.filters { display: flex; gap: 10px; align-items: center; margin-bottom: 10px; flex-wrap: wrap; }
select, input, textarea, button { font: inherit; }
select, input[type=password], textarea { border: 1px solid var(--line); border-radius: 6px; padding: 5px 8px; background: #fff; }
button { border: 1px solid var(--line); background: #fff; border-radius: 6px; padding: 4px 10px; cursor: pointer; }
button:hover { background: var(--muted-bg); }
button[type=submit] { background: var(--accent); color: #fff; border-color: var(--accent); }
.pager { display: flex; gap: 8px; margin-top: 10px; }
.error { background: var(--bad-bg); color: var(--bad); padding: 10px 14px; border-radius: 8px; }
.token { max-width: 640px; }
.chart-box { overflow: auto; max-height: 80vh; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg.chart .state .box { fill: #fff; stroke: #94a3b8; stroke-width: 1.3; }
svg.chart .state.compound > .box, svg.chart .state.parallel > .box { fill: #f8fafc; }
svg.chart .state.parallel > .box { stroke-dasharray: 5 3; }
svg.chart .state .inner { fill: none; stroke: #94a3b8; }
svg.chart .state .name { font: 600 12px system-ui, sans-serif; fill: var(--fg); }
svg.chart .state .sub { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg.chart .state .sep { stroke: var(--line); }
svg.chart .state { cursor: pointer; }
svg.chart .state.active > .box { fill: var(--accent-bg); stroke: var(--accent); stroke-width: 2.5; }
svg.chart .state.active > .name { fill: #1e3a8a; }
svg.chart .state.active.compound > .box, svg.chart .state.active.parallel > .box { fill: #eef4ff; }
svg.chart .initial { fill: var(--fg); }
svg.chart .edge { fill: none; stroke: #64748b; stroke-width: 1.2; }
svg.chart .edge.init { stroke: var(--fg); }
svg.chart .arrowhead { fill: #64748b; }
svg.chart .label { font: 11px system-ui, sans-serif; fill: #334155; }
svg.chart .label-bg { fill: #fff; opacity: .85; }
svg.chart .badge rect { fill: var(--accent); }
svg.chart .badge text { font: 600 11px system-ui, sans-serif; fill: #fff; }
.actor-head { display: flex; gap: 14px; align-items: center; margin-bottom: 14px; flex-wrap: wrap; }
.detail pre.json { background: var(--muted-bg); padding: 8px 10px; border-radius: 6px; overflow: auto; max-height: 260px; margin: 0; }
ul.plain { list-style: none; padding: 0; margin: 0; }
ul.plain li { padding: 2px 0; }
.controls { display: flex; gap: 8px; align-items: center; margin-bottom: 10px; }
.controls input[type=range] { flex: 1; accent-color: var(--accent); }
.steplabel { min-width: 150px; color: var(--muted); font-variant-numeric: tabular-nums; }
.timeline-wrap { max-height: 520px; overflow: auto; }
table.timeline tr { cursor: pointer; }
table.timeline tr:hover td { background: #f8fafc; }
table.timeline tr.selected td { background: var(--accent-bg); }
table.timeline tr.outcome-failed td { color: var(--bad); }
table.timeline tr.outcome-ignored td { color: var(--muted); }
.kind { font-size: 11px; padding: 0 6px; border-radius: 4px; background: var(--muted-bg); color: var(--muted); }
.kind.timer { background: var(--warn-bg); color: var(--warn); }
.kind.result { background: var(--ok-bg); color: var(--ok); }
.kind.send { background: var(--accent-bg); color: var(--accent); }
.send textarea { width: 100%; max-width: 720px; display: block; margin-bottom: 8px; }
.shards { display: grid; grid-template-columns: repeat(auto-fill, minmax(78px, 1fr)); gap: 6px; }
.shard { border-radius: 6px; padding: 6px 8px; display: flex; flex-direction: column; font-size: 12px; }
.shard small { color: #334155; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 6px; }
`;
