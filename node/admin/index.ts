// node/admin/index.ts — the public face of the admin server: HTTP API, web UI, metrics endpoint, and the statechart as data.
export { buildAdminApp, createAdminServer, type AdminServer, type AdminServerOptions } from "./server.js";
export { createTokenCheck, type AdminTokens, type Scope } from "./auth.js";
export { statechartOf, type Statechart, type StatechartNode, type StatechartTransition } from "./statechart.js";
export { findStep, toStepView, type StepView } from "./steps.js";
