// test/connectors/http-connector-process.mjs — runs the built http.request connector in a process of its own, so a test can SIGKILL it mid-call.
// Usage: node http-connector-process.mjs <nats-url> '<allow list as JSON>'   (prints "ready" once serving)
import { createHttpRequestConnector } from "../../dist/connectors/http-request/index.js";

const [servers, allow = "[]"] = process.argv.slice(2);
const connector = await createHttpRequestConnector({ servers, allow: JSON.parse(allow) });
process.stdout.write("ready\n");
process.once("SIGTERM", () => {
  void connector.drain().then(() => process.exit(0));
});
