// Builds dist/roomcast.js — the plain-script and CommonJS form of src/roomcast.mjs (the
// server embeds it and serves it at GET /roomcast.js) — from the ESM source, with no tool but
// Node: the source's export lines become a UMD footer; and roomcast.d.mts from roomcast.d.ts. `node build.mjs --check` fails when
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
// The declarations, once for `require` (roomcast.d.ts) and once for `import` (roomcast.d.mts:
// TypeScript reads a .d.ts beside a package without "type": "module" as CommonJS).
const dts = readFileSync(here("roomcast.d.ts"), "utf8");
const built = [
  ["dist/roomcast.js", out, "src/roomcast.mjs"],
  ["roomcast.d.mts", `// Built from roomcast.d.ts by build.mjs; edit that file.\n${dts}`, "roomcast.d.ts"],
];
for (const [file, text, from] of built) {
  if (process.argv.includes("--check")) {
    let now = "";
    try {
      now = readFileSync(here(file), "utf8");
    } catch {}
    if (now !== text) {
      console.error(`clients/js/${file} is not what ${from} builds: run \`node clients/js/build.mjs\``);
      process.exit(1);
    }
  } else {
    writeFileSync(here(file), text);
  }
}
