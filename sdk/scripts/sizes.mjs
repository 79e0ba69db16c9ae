#!/usr/bin/env node
// Bundle sizes of each package: esbuild bundle + minify of its entry together with
// every lower layer ("bundled": all of their exports, what an app of that layer ships)
// and alone with the lower layers external ("alone"); minified and gzip (node:zlib)
// bytes, one line per package.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { LAYERS } from "./check-layers.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const entry = (p) => `${root}packages/${p}/src/index.ts`;
const alias = Object.fromEntries(LAYERS.map((p) => [`@cascade/${p}`, entry(p)]));

async function size(pkg, external) {
  // Bundled: the package and every layer below it, whole (what an app of this layer ships).
  const stack = LAYERS.slice(0, LAYERS.indexOf(pkg) + 1).filter((p) => existsSync(entry(p)));
  const out = await build({
    ...(external
      ? { entryPoints: [entry(pkg)] }
      : { stdin: { contents: stack.map((p) => `export * from "@cascade/${p}";`).join("\n"), resolveDir: root, loader: "js" } }),
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
console.log("bundled: the package with every lower layer, all exports; alone: lower layers external");
console.log(`${"package".padEnd(18)} ${"bundled min".padStart(11)} ${"gzip".padStart(9)}   ${"alone min".padStart(9)} ${"gzip".padStart(9)}`);
for (const pkg of LAYERS) {
  if (!existsSync(entry(pkg))) continue;
  const all = await size(pkg, false);
  const alone = await size(pkg, true);
  console.log(`${`@cascade/${pkg}`.padEnd(18)} ${b(all.min).padStart(11)} ${b(all.gzip)}   ${b(alone.min)} ${b(alone.gzip)}`);
}
