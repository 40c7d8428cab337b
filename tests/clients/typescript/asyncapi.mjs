// Validates openapi/asyncapi.yaml with the AsyncAPI parser: any error fails; warnings are
// printed and fail too, so that the document stays clean.
//
// Usage: node asyncapi.mjs PATH

import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
const { document, diagnostics } = await new Parser().parse(readFileSync(path, "utf8"), { source: path });
const severities = ["error", "warning", "info", "hint"];
const shown = diagnostics.filter((d) => d.severity <= 1);
for (const d of shown) {
  console.error(`${path}: ${severities[d.severity]} ${d.code} at ${d.path.join(".")}: ${d.message}`);
}
if (document === undefined || shown.length > 0) {
  console.error(`asyncapi: 0 passed, 1 failed`);
  process.exit(1);
}
const frames = document.messages().length;
console.log(`asyncapi: ${path} is valid AsyncAPI ${document.version()} with ${frames} messages`);
