// node/admin/ui/chart.ts — browser side: draws a statechart (nested, parallel, final, history states) as SVG, laid out by ELK in a web worker.
/// <reference lib="dom" />
import type { ELK, ElkExtendedEdge, ElkLabel, ElkNode } from "elkjs/lib/elk-api.js";
import type { Statechart, StatechartNode } from "../statechart.js";
import { s } from "./dom.js";

declare global {
  interface Window {
    ELK?: new (options?: { workerUrl?: string }) => ELK;
  }
}

/** A drawn statechart whose highlighted states and counts can change without laying it out again. */
export interface DrawnChart {
  readonly svg: SVGSVGElement;
  /** Marks the states at these paths (and only them) active. */
  highlight(paths: ReadonlySet<string>): void;
  /** Shows a count badge on each state path (absent paths: none). */
  counts(byPath: Readonly<Record<string, number>>): void;
}

const font = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
const titleH = 26;
let measurer: CanvasRenderingContext2D | null = null;

function textWidth(t: string, bold = false): number {
  measurer ??= document.createElement("canvas").getContext("2d");
  if (!measurer) return t.length * 7;
  measurer.font = bold ? `600 ${font}` : font;
  return Math.ceil(measurer.measureText(t).width);
}

let elk: ELK | undefined;
const layouts = new Map<string, Promise<ElkNode>>();

interface Info {
  node: StatechartNode;
  lines: string[];
}

/** Lines drawn inside an atomic state besides its name: invokes and transitions that only run actions. */
function linesOf(n: StatechartNode): string[] {
  const lines = n.invoke.map((i) => `invoke ${i.src}`);
  const self = n.transitions.filter((t) => t.targets.length === 0).map((t) => t.label);
  if (self.length) lines.push(`↺ ${self.join(" · ")}`);
  return lines;
}

function buildGraph(chart: Statechart, infos: Map<string, Info>): ElkNode {
  const edges: ElkExtendedEdge[] = [];
  let edgeN = 0;
  const toElk = (n: StatechartNode): ElkNode => {
    const lines = linesOf(n);
    infos.set(n.id, { node: n, lines });
    const nameW = textWidth(n.key, true) + 44;
    const linesW = Math.max(0, ...lines.map((l) => textWidth(l))) + 24;
    const el: ElkNode = { id: n.id };
    if (n.states.length > 0) {
      el.children = [];
      if (n.initial) {
        el.children.push({ id: `${n.id}#init`, width: 10, height: 10 });
        edges.push({ id: `e${edgeN++}`, sources: [`${n.id}#init`], targets: [n.initial] });
      }
      el.children.push(...n.states.map(toElk));
      el.layoutOptions = { "elk.padding": `[top=${titleH + 12 + lines.length * 16},left=14,bottom=14,right=14]` };
      el.width = Math.max(nameW, linesW);
    } else if (n.type === "history") {
      el.width = 28;
      el.height = 28;
    } else {
      el.width = Math.max(nameW, linesW, 64);
      el.height = 34 + lines.length * 16;
    }
    for (const t of n.transitions) {
      for (const target of t.targets) {
        const label = t.guard ? `${t.label} [${t.guard}]` : t.label;
        const lab: ElkLabel = { text: label, width: textWidth(label) + 6, height: 14 };
        edges.push({ id: `e${edgeN++}`, sources: [n.id], targets: [target], labels: [lab] });
      }
    }
    return el;
  };
  const root = chart.root;
  const top: ElkNode = {
    id: "__root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.layered.spacing.nodeNodeBetweenLayers": "56",
      "elk.spacing.nodeNode": "26",
      "elk.spacing.edgeLabel": "4",
      "elk.layered.spacing.edgeNodeBetweenLayers": "18",
      "elk.edgeLabels.inline": "false",
      "elk.padding": "[top=12,left=12,bottom=12,right=12]",
    },
    children: [],
    edges,
  };
  if (root.states.length === 0) {
    top.children = [toElk(root)];
  } else {
    infos.set(root.id, { node: root, lines: [] });
    if (root.initial) {
      top.children!.push({ id: `${root.id}#init`, width: 10, height: 10 });
      edges.push({ id: `e${edgeN++}`, sources: [`${root.id}#init`], targets: [root.initial] });
    }
    top.children!.push(...root.states.map(toElk));
    // Transitions of the root itself (`on` at the top level) apply in every state: drawn from the first child.
    for (const t of root.transitions) {
      for (const target of t.targets) {
        edges.push({ id: `e${edgeN++}`, sources: [root.states[0]!.id], targets: [target], labels: [{ text: `${t.label} (any state)`, width: textWidth(`${t.label} (any state)`) + 6, height: 14 }] });
      }
    }
  }
  return top;
}

function layout(key: string, graph: ElkNode): Promise<ElkNode> {
  let p = layouts.get(key);
  if (!p) {
    if (!window.ELK) return Promise.reject(new Error("the layout library did not load"));
    elk ??= new window.ELK({ workerUrl: "/ui/vendor/elk-worker.min.js" });
    p = elk.layout(graph);
    p.catch(() => layouts.delete(key));
    layouts.set(key, p);
  }
  return p;
}

/**
 * Lays out and draws `chart`. `onState` is called with a state's path when it is clicked. The layout is
 * computed once per program version and reused.
 */
export async function drawChart(chart: Statechart, onState?: (path: string) => void): Promise<DrawnChart> {
  const infos = new Map<string, Info>();
  const graph = buildGraph(chart, infos);
  const laid = await layout(`${chart.program}@${chart.version}`, graph);
  const width = laid.width ?? 400;
  const height = laid.height ?? 200;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img", "aria-label": `statechart of ${chart.program}` }) as SVGSVGElement;
  // Shrinks to fit its box down to 70 % of its natural size (labels stay legible), scrolls beyond that.
  svg.style.minWidth = `${Math.round(width * 0.7)}px`;
  svg.append(
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))),
  );
  const abs = new Map<string, { x: number; y: number }>([["__root", { x: 0, y: 0 }]]);
  const byPath = new Map<string, SVGElement>();
  const badges = new Map<string, { g: SVGElement; rect: SVGElement; text: SVGElement; right: number; top: number }>();
  const nodeLayer = s("g", { class: "nodes" });
  const edgeLayer = s("g", { class: "edges" });

  const drawNode = (n: ElkNode, ox: number, oy: number) => {
    const x = ox + (n.x ?? 0);
    const y = oy + (n.y ?? 0);
    abs.set(n.id, { x, y });
    const w = n.width ?? 0;
    const hgt = n.height ?? 0;
    if (n.id.endsWith("#init")) {
      nodeLayer.append(s("circle", { cx: x + w / 2, cy: y + hgt / 2, r: 5, class: "initial" }));
      return;
    }
    const info = infos.get(n.id);
    if (!info) return;
    const st = info.node;
    const g = s("g", { class: `state ${st.type}`, "data-path": st.path, "data-id": st.id });
    if (st.type === "history") {
      g.append(s("circle", { cx: x + w / 2, cy: y + hgt / 2, r: w / 2, class: "box" }), s("text", { x: x + w / 2, y: y + hgt / 2 + 4, "text-anchor": "middle", class: "name" }, st.history === "deep" ? "H*" : "H"));
    } else {
      g.append(s("rect", { x, y, width: w, height: hgt, rx: 9, class: "box" }));
      if (st.type === "final") g.append(s("rect", { x: x + 3, y: y + 3, width: w - 6, height: hgt - 6, rx: 7, class: "inner" }));
      const compound = (n.children?.length ?? 0) > 0;
      const ty = compound ? y + 18 : y + 21;
      g.append(s("text", { x: compound ? x + 12 : x + w / 2, y: ty, "text-anchor": compound ? "start" : "middle", class: "name" }, st.key));
      if (compound) g.append(s("line", { x1: x, x2: x + w, y1: y + titleH + info.lines.length * 16, y2: y + titleH + info.lines.length * 16, class: "sep" }));
      info.lines.forEach((l, i) => g.append(s("text", { x: compound ? x + 12 : x + w / 2, y: ty + 16 * (i + 1), "text-anchor": compound ? "start" : "middle", class: "sub" }, l)));
      const badge = s("g", { class: "badge", visibility: "hidden" });
      const bt = s("text", { "text-anchor": "middle" });
      const br = s("rect", { height: 18, rx: 9 });
      badge.append(br, bt);
      g.append(badge);
      badges.set(st.path, { g: badge, rect: br, text: bt, right: x + w + 8, top: y - 9 });
    }
    g.append(s("title", {}, `${st.path || st.id} (${st.type})${st.description ? `: ${st.description}` : ""}`));
    if (onState) g.addEventListener("click", (ev) => {
      ev.stopPropagation();
      onState(st.path);
    });
    byPath.set(st.path, g);
    nodeLayer.append(g);
    for (const c of n.children ?? []) drawNode(c, x, y);
  };
  for (const c of laid.children ?? []) drawNode(c, 0, 0);

  const drawEdges = (n: ElkNode) => {
    for (const e of n.edges ?? []) {
      const container = (e as ElkExtendedEdge & { container?: string }).container ?? n.id;
      const o = abs.get(container) ?? { x: 0, y: 0 };
      for (const sec of e.sections ?? []) {
        const pts = [sec.startPoint, ...(sec.bendPoints ?? []), sec.endPoint];
        const d = pts.map((p, i) => `${i ? "L" : "M"} ${o.x + p.x} ${o.y + p.y}`).join(" ");
        edgeLayer.append(s("path", { d, class: e.sources[0]?.endsWith("#init") ? "edge init" : "edge", "marker-end": "url(#arrow)" }));
      }
      for (const l of e.labels ?? []) {
        const lx = o.x + (l.x ?? 0);
        const ly = o.y + (l.y ?? 0);
        edgeLayer.append(s("rect", { x: lx - 1, y: ly - 1, width: (l.width ?? 0) + 2, height: (l.height ?? 0) + 2, rx: 3, class: "label-bg" }));
        edgeLayer.append(s("text", { x: lx + 3, y: ly + 11, class: "label" }, l.text ?? ""));
      }
    }
    for (const c of n.children ?? []) drawEdges(c);
  };
  drawEdges(laid);
  svg.append(nodeLayer, edgeLayer);

  return {
    svg,
    highlight(paths) {
      for (const [p, g] of byPath) g.classList.toggle("active", paths.has(p));
    },
    counts(byPathCounts) {
      for (const [p, b] of badges) {
        const n = byPathCounts[p] ?? 0;
        b.g.setAttribute("visibility", n > 0 ? "visible" : "hidden");
        const label = n >= 10_000 ? `${Math.round(n / 1000)}k` : String(n);
        b.text.textContent = label;
        const w = Math.max(22, textWidth(label, true) + 12);
        b.rect.setAttribute("x", String(b.right - w));
        b.rect.setAttribute("y", String(b.top));
        b.rect.setAttribute("width", String(w));
        b.text.setAttribute("x", String(b.right - w / 2));
        b.text.setAttribute("y", String(b.top + 13));
      }
    },
  };
}
