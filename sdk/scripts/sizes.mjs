#!/usr/bin/env node
// Bundle sizes of each package: esbuild bundle + minify of its entry, with its lower
// layers bundled in ("bundled") and alone with them external ("alone"); minified and
// gzip (node:zlib) bytes, one line per package.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { LAYERS } from "./check-layers.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const entry = (p) => `${root}packages/${p}/src/index.ts`;
const alias = Object.fromEntries(LAYERS.map((p) => [`@cascade/${p}`, entry(p)]));

async function size(pkg, external) {
  const out = await build({
    entryPoints: [entry(pkg)],
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    write: false,
    alias: external ? {} : alias,
    external: external ? LAYERS.filter((p) => p !== pkg).map((p) => `@cascade/${p}`) : [],
    logLevel: "error",
  });
  const code = out.outputFiles[0].contents;
  return { min: code.length, gzip: gzipSync(code, { level: 9 }).length };
}

const b = (n) => `${n} B`.padStart(9);
console.log("bundled: with the lower layers it uses bundled in; alone: lower layers external");
console.log(`${"package".padEnd(18)} ${"bundled min".padStart(11)} ${"gzip".padStart(9)}   ${"alone min".padStart(9)} ${"gzip".padStart(9)}`);
for (const pkg of LAYERS) {
  if (!existsSync(entry(pkg))) continue;
  const all = await size(pkg, false);
  const alone = await size(pkg, true);
  console.log(`${`@cascade/${pkg}`.padEnd(18)} ${b(all.min).padStart(11)} ${b(all.gzip)}   ${b(alone.min)} ${b(alone.gzip)}`);
}
