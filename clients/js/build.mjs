// Builds dist/roomcast.js — the plain-script and CommonJS form of src/roomcast.mjs (the
// server embeds it and serves it at GET /roomcast.js) — from the ESM source, with no tool but
// Node: the source's export lines become a UMD footer. `node build.mjs --check` fails when
// dist/ is not what the source builds (the test suite runs it).
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const src = readFileSync(here("src/roomcast.mjs"), "utf8");
const tail = "export { Roomcast, RoomcastError, backoff };\nexport default Roomcast;\n";
if (!src.endsWith(tail)) throw new Error("src/roomcast.mjs must end with its two export lines");
const body = src.slice(0, -tail.length);
if (/^\s*(export|import)\b/m.test(body)) throw new Error("src/roomcast.mjs: export/import only in its last two lines");
const pkg = JSON.parse(readFileSync(here("package.json"), "utf8"));
const out = `/*! roomcast.js ${pkg.version} — built from src/roomcast.mjs by build.mjs; edit that file. */
(function (root, factory) {
  const Roomcast = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = Roomcast;
  } else {
    root.Roomcast = Roomcast;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";
${body.replace(/^(?=.)/gm, "  ")}
  Roomcast.Roomcast = Roomcast;
  Roomcast.RoomcastError = RoomcastError;
  Roomcast.backoff = backoff;
  Roomcast.default = Roomcast;
  return Roomcast;
});
`;
const target = here("dist/roomcast.js");
if (process.argv.includes("--check")) {
  let now = "";
  try {
    now = readFileSync(target, "utf8");
  } catch {}
  if (now !== out) {
    console.error("clients/js/dist/roomcast.js is not what src/roomcast.mjs builds: run `node clients/js/build.mjs`");
    process.exit(1);
  }
} else {
  writeFileSync(target, out);
}
