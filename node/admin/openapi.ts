// node/admin/openapi.ts — the OpenAPI 3.1 document of the admin API, built from the routes' own schemas.

/** What the document needs of a route (fastify's `onRoute` options carry it). */
export interface RouteInfo {
  method: string | string[];
  url: string;
  schema?: Record<string, unknown> | undefined;
  /** Scope the route needs, if any. */
  scope?: "read" | "admin" | undefined;
}

type Json = Record<string, unknown>;

/** Rewrites `{ $ref: "Name#" }` (fastify's shared schemas) to `#/components/schemas/Name`, and drops `$id`. */
function toOpenApi(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toOpenApi);
  if (typeof schema !== "object" || schema === null) return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema as Json)) {
    if (k === "$id") continue;
    if (k === "$ref" && typeof v === "string") out.$ref = `#/components/schemas/${v.replace(/#$/, "")}`;
    else out[k] = toOpenApi(v);
  }
  return out;
}

function parameters(where: "path" | "query", schema: unknown): Json[] {
  if (typeof schema !== "object" || schema === null) return [];
  const s = schema as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, p]) => {
    const { description, ...rest } = p as Json;
    return {
      name,
      in: where,
      required: where === "path" || (s.required ?? []).includes(name),
      ...(typeof description === "string" ? { description } : {}),
      schema: toOpenApi(rest),
    };
  });
}

/** Builds the document. `shared` are the schemas routes reference by `$ref`. */
export function buildOpenApi(routes: readonly RouteInfo[], shared: readonly Json[], info: { title: string; version: string }): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const r of routes) {
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).map((m) => m.toLowerCase()).filter((m) => m !== "head");
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    const s = r.schema ?? {};
    for (const method of methods) {
      const op: Json = {};
      if (typeof s.summary === "string") op.summary = s.summary;
      if (Array.isArray(s.tags)) op.tags = s.tags;
      const params = [...parameters("path", s.params), ...parameters("query", s.querystring)];
      if (params.length) op.parameters = params;
      if (s.body) op.requestBody = { required: true, content: { "application/json": { schema: toOpenApi(s.body) } } };
      const responses: Json = {};
      for (const [code, schema] of Object.entries((s.response as Json | undefined) ?? {})) {
        responses[code] = { description: Number(code) < 400 ? "OK" : "error", content: { "application/json": { schema: toOpenApi(schema) } } };
      }
      if (Object.keys(responses).length === 0) responses["200"] = { description: "OK" };
      op.responses = responses;
      if (r.scope) op.security = [{ bearer: [r.scope] }];
      (paths[path] ??= {})[method] = op;
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      ...info,
      description: "The Flowmetal admin API, served by every node. With tokens configured, send `Authorization: Bearer <token>`: a read token for GET routes, the admin token for everything.",
    },
    paths,
    components: {
      schemas: Object.fromEntries(shared.map((s) => [String(s.$id), toOpenApi(s)])),
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
    },
  };
}
