// node/admin/schemas.ts — JSON schemas of the admin API: request validation, response serialization and the OpenAPI document.

const str = { type: "string" } as const;
const int = { type: "integer" } as const;
const bool = { type: "boolean" } as const;
const any = {} as const;
const anyObject = { type: "object", additionalProperties: true } as const;
const token = { type: "string", pattern: "^[A-Za-z0-9_-]{1,128}$" } as const;

/** Schemas referenced by `$ref: "<id>#"`; also listed under `components.schemas` in the OpenAPI document. */
export const sharedSchemas = [
  {
    $id: "Error",
    type: "object",
    description: "A Flowmetal error (PROTOCOL.md §11).",
    required: ["code", "message", "retryable"],
    properties: { code: str, message: str, retryable: bool, details: anyObject },
  },
  {
    $id: "IndexEntry",
    type: "object",
    description: "One actor as the index knows it.",
    required: ["actor", "program", "key", "value", "status", "step", "updated"],
    properties: { actor: str, program: str, key: str, value: any, status: str, step: int, updated: int },
  },
  {
    $id: "IndexLag",
    type: "object",
    description: "How far the actor index is behind the journal.",
    required: ["records", "lastSeq", "projectedSeq", "running"],
    properties: { records: int, lastSeq: int, projectedSeq: int, running: bool },
  },
  {
    $id: "Transition",
    type: "object",
    required: ["event", "label", "kind", "targets", "actions", "reenter"],
    properties: {
      event: str,
      label: str,
      kind: { type: "string", enum: ["event", "after", "done", "error", "always"] },
      targets: { type: "array", items: str },
      guard: str,
      actions: { type: "array", items: str },
      reenter: bool,
    },
  },
  {
    $id: "StateNode",
    type: "object",
    description: "A state node of a statechart, with its children.",
    required: ["id", "key", "path", "type", "tags", "entry", "exit", "invoke", "transitions", "states"],
    properties: {
      id: str,
      key: str,
      path: str,
      type: { type: "string", enum: ["atomic", "compound", "parallel", "final", "history"] },
      initial: str,
      history: { type: "string", enum: ["shallow", "deep"] },
      description: str,
      tags: { type: "array", items: str },
      entry: { type: "array", items: str },
      exit: { type: "array", items: str },
      invoke: { type: "array", items: { type: "object", required: ["id", "src"], properties: { id: str, src: str } } },
      transitions: { type: "array", items: { $ref: "Transition#" } },
      states: { type: "array", items: { $ref: "StateNode#" } },
    },
  },
  {
    $id: "Step",
    type: "object",
    description: "One step: the input, the state after it, what it asked for, and the timers and calls pending after it.",
    required: ["step", "seq", "kind", "event", "outcome", "value", "status", "context", "effects", "timers", "calls", "version", "node", "epoch", "time"],
    properties: {
      step: int,
      seq: int,
      kind: str,
      event: anyObject,
      outcome: str,
      error: { $ref: "Error#" },
      value: any,
      status: str,
      context: any,
      effects: { type: "array", items: anyObject },
      timers: anyObject,
      calls: anyObject,
      version: str,
      node: str,
      epoch: int,
      time: int,
    },
  },
] as const;

const errorResponses = {
  400: { $ref: "Error#" },
  401: { $ref: "Error#" },
  403: { $ref: "Error#" },
  404: { $ref: "Error#" },
  503: { $ref: "Error#" },
} as const;

const programParams = { type: "object", required: ["program"], properties: { program: token } } as const;
const actorParams = { type: "object", required: ["program", "key"], properties: { program: token, key: token } } as const;

/** Route schemas, by route. */
export const schemas = {
  programs: {
    summary: "Programs loaded by this node and programs in the index, with actor counts",
    tags: ["programs"],
    response: {
      200: {
        type: "object",
        required: ["programs"],
        properties: {
          programs: {
            type: "array",
            items: {
              type: "object",
              required: ["name", "version", "loaded", "actors", "statuses"],
              properties: { name: str, version: { type: ["string", "null"] }, description: { type: ["string", "null"] }, loaded: bool, actors: int, statuses: { type: "object", additionalProperties: int } },
            },
          },
        },
      },
      ...errorResponses,
    },
  },
  program: {
    summary: "A program and its statechart as data",
    tags: ["programs"],
    params: programParams,
    response: {
      200: {
        type: "object",
        required: ["program", "version", "description", "root"],
        properties: { program: str, version: str, description: { type: ["string", "null"] }, root: { $ref: "StateNode#" } },
      },
      ...errorResponses,
    },
  },
  stats: {
    summary: "Actors of a program per state and status (from the index), and the index lag",
    tags: ["actors"],
    params: programParams,
    response: {
      200: {
        type: "object",
        required: ["program", "total", "states", "statuses", "lag"],
        properties: {
          program: str,
          total: int,
          states: { type: "object", additionalProperties: int, description: "per state node (dotted path); an actor counts in its state and every ancestor" },
          statuses: { type: "object", additionalProperties: int },
          lag: { $ref: "IndexLag#" },
        },
      },
      ...errorResponses,
    },
  },
  actors: {
    summary: "Actors of a program, filtered by state and status, paged by key",
    tags: ["actors"],
    params: programParams,
    querystring: {
      type: "object",
      properties: {
        state: { type: "string", maxLength: 1024, description: "dotted state path, e.g. awaitingPayment or shipping.late" },
        status: { type: "string", enum: ["active", "done", "error", "stopped"] },
        after: { type: "string", maxLength: 128, description: "cursor: the `next` of the previous page" },
        limit: { type: "integer", minimum: 1, maximum: 1000, default: 50 },
      },
    },
    response: {
      200: {
        type: "object",
        required: ["program", "actors", "total"],
        properties: { program: str, actors: { type: "array", items: { $ref: "IndexEntry#" } }, total: int, next: str },
      },
      ...errorResponses,
    },
  },
  actor: {
    summary: "An actor's current snapshot: state, context, pending timers and calls (from its journal)",
    tags: ["actors"],
    params: actorParams,
    response: {
      200: {
        type: "object",
        required: ["actor", "program", "version", "step", "value", "status", "context", "timers", "calls", "updated"],
        properties: { actor: str, program: str, version: str, step: int, value: any, status: str, context: any, timers: anyObject, calls: anyObject, updated: int },
      },
      ...errorResponses,
    },
  },
  history: {
    summary: "An actor's steps in order, paged (event in → state after → effects out)",
    tags: ["actors"],
    params: actorParams,
    querystring: {
      type: "object",
      properties: {
        after: { type: "integer", minimum: 0, description: "cursor: the `next` of the previous page (a journal sequence, not a step)" },
        limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 },
      },
    },
    response: {
      200: {
        type: "object",
        required: ["actor", "steps"],
        properties: { actor: str, steps: { type: "array", items: { $ref: "Step#" } }, next: int },
      },
      ...errorResponses,
    },
  },
  step: {
    summary: "An actor at step N: the step and the state, context, timers and calls after it",
    tags: ["actors"],
    params: { type: "object", required: ["program", "key", "step"], properties: { program: token, key: token, step: { type: "integer", minimum: 1 } } },
    response: { 200: { $ref: "Step#" }, ...errorResponses },
  },
  send: {
    summary: "Send an event to an actor (admin scope); answers once it is durably accepted",
    tags: ["actors"],
    params: actorParams,
    body: {
      type: "object",
      required: ["event"],
      properties: { event: { type: "object", required: ["type"], properties: { type: { type: "string", minLength: 1, maxLength: 256 } }, additionalProperties: true }, msgId: { type: "string", minLength: 1, maxLength: 256 } },
    },
    response: {
      202: { type: "object", required: ["actor", "seq", "duplicate"], properties: { actor: str, seq: int, duplicate: bool } },
      ...errorResponses,
    },
  },
  cluster: {
    summary: "Nodes, shards, owners and recent handoffs",
    tags: ["cluster"],
    response: {
      200: {
        type: "object",
        required: ["clustered", "shards", "replicas", "nodes", "owners", "handoffs", "self"],
        properties: {
          clustered: bool,
          self: { type: ["string", "null"] },
          shards: int,
          replicas: int,
          nodes: {
            type: "array",
            items: {
              type: "object",
              properties: { name: str, instance: str, host: str, pid: int, startedAt: int, draining: bool, owns: { type: "array", items: int } },
            },
          },
          owners: {
            type: "array",
            items: {
              type: "object",
              properties: { shard: int, node: { type: ["string", "null"] }, epoch: int, since: int, reason: str, from: { type: ["string", "null"] }, pinned: { type: ["string", "null"] } },
            },
          },
          handoffs: {
            type: "array",
            description: "shards that came from another node (move, drain, failover), newest first",
            items: { type: "object", properties: { shard: int, from: { type: ["string", "null"] }, to: { type: ["string", "null"] }, epoch: int, at: int, reason: str } },
          },
        },
      },
      ...errorResponses,
    },
  },
  index: {
    summary: "The actor index: actors indexed and the projector's lag",
    tags: ["index"],
    response: {
      200: { type: "object", required: ["actors", "lag"], properties: { actors: int, lag: { $ref: "IndexLag#" } } },
      ...errorResponses,
    },
  },
  live: {
    summary: "Server-sent events: `step` for each step of `actor`, or `index` (throttled) when actors of `program` change",
    tags: ["live"],
    querystring: { type: "object", properties: { actor: { type: "string", maxLength: 300 }, program: token } },
  },
} as const;
