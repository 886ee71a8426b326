// node/admin/ui/dom.ts — browser side: a tiny element builder and the formatting helpers every page uses.
/// <reference lib="dom" />

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

/** Creates an element: `h("a", { href: "#/" }, "home")`. Attributes starting with `on` are listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    // Through the CSSOM: the Content-Security-Policy forbids style attributes.
    else if (k === "style") el.style.cssText = String(v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

const svgNs = "http://www.w3.org/2000/svg";

/** Creates an SVG element with attributes. */
export function s(tag: string, attrs: Record<string, string | number> = {}, ...children: (Node | string)[]): SVGElement {
  const el = document.createElementNS(svgNs, tag) as SVGElement;
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

function append(el: Element, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** A state value as people read it: `awaitingPayment`, `shipping.late`, `{a: x, b: y}` → `a.x, b.y`. */
export function formatValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value !== "object" || value === null) return String(value);
  const leaves: string[] = [];
  const walk = (v: unknown, prefix: string) => {
    if (typeof v === "string") leaves.push(prefix + v);
    else if (typeof v === "object" && v !== null) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length === 0 && prefix) leaves.push(prefix.slice(0, -1));
      for (const [k, x] of entries) walk(x, `${prefix}${k}.`);
    }
  };
  walk(value, "");
  return leaves.join(", ") || "(root)";
}

/** Every active state path of a value (see the index's statePaths). */
export function statePaths(value: unknown, prefix = ""): string[] {
  if (typeof value === "string") return [prefix + value];
  if (typeof value !== "object" || value === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out.push(prefix + k, ...statePaths(v, `${prefix}${k}.`));
  }
  return out;
}

/** A wall-clock time in the browser's locale, 24-hour; `-` for none. */
export function formatTime(ms: number): string {
  if (!ms) return "-";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** `in 3m 20s`, `2h ago`. */
export function relative(ms: number, now = Date.now()): string {
  const d = ms - now;
  const a = Math.abs(d);
  const parts = a < 1000 ? "now" : a < 60_000 ? `${Math.round(a / 1000)}s` : a < 3_600_000 ? `${Math.floor(a / 60_000)}m ${Math.round((a % 60_000) / 1000)}s` : a < 86_400_000 ? `${Math.floor(a / 3_600_000)}h ${Math.round((a % 3_600_000) / 60_000)}m` : `${Math.floor(a / 86_400_000)}d ${Math.round((a % 86_400_000) / 3_600_000)}h`;
  if (parts === "now") return "now";
  return d > 0 ? `in ${parts}` : `${parts} ago`;
}

/** Pretty JSON, shortened for display. */
export function json(v: unknown, max = 4000): string {
  const t = JSON.stringify(v, null, 2) ?? "undefined";
  return t.length > max ? `${t.slice(0, max)}\n…` : t;
}
