#!/usr/bin/env node
// Builds the demo pages served by `cascade serve` at /call and /meeting: bundles
// demo/call.ts and demo/meeting.ts with every SDK package they use (read from the
// packages' sources, so no prior `tsc` run is needed) into minified, self-contained
// dist-demo/{call,meeting}.js, and copies demo/{call,meeting}.html beside them.
//
//   node demo/build.mjs            (from sdk/; prints each output file and its size)

import * as esbuild from "esbuild";
import { copyFile, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";

const demoDir = path.dirname(fileURLToPath(import.meta.url));
export const sdkDir = path.dirname(demoDir);
/** Where the pages go: `CASCADE_DEMO_OUTDIR` (cargo's build script sets it), else dist-demo/. */
export const outDir = process.env.CASCADE_DEMO_OUTDIR ?? path.join(sdkDir, "dist-demo");
export const pages = ["call", "meeting"];

/** Resolves `@cascade/<package>` to that package's TypeScript entry point. */
export const workspaceSources = {
  name: "cascade-workspace-sources",
  setup(build) {
    build.onResolve({ filter: /^@cascade\/(core|signal|call|callkit)$/ }, (args) => ({
      path: path.join(sdkDir, "packages", args.path.slice("@cascade/".length), "src", "index.ts"),
    }));
  },
};

/** esbuild options shared by the demo build and anything that bundles a page like it. */
export function bundleOptions(entryPoints, outdir) {
  return {
    entryPoints,
    outdir,
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    legalComments: "none",
    logLevel: "warning",
    plugins: [workspaceSources],
  };
}

export async function buildDemo() {
  await mkdir(outDir, { recursive: true });
  const entries = Object.fromEntries(pages.map((p) => [p, path.join(demoDir, `${p}.ts`)]));
  await esbuild.build(bundleOptions(entries, outDir));
  await Promise.all(pages.map((p) => copyFile(path.join(demoDir, `${p}.html`), path.join(outDir, `${p}.html`))));
  const files = [];
  for (const p of pages) {
    for (const ext of ["html", "js"]) {
      const file = path.join(outDir, `${p}.${ext}`);
      const bytes = await readFile(file);
      files.push({ file: path.relative(sdkDir, file), bytes: bytes.length, gzip: gzipSync(bytes).length });
    }
  }
  return files;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const files = await buildDemo();
  for (const f of files) console.log(`${f.file}  ${f.bytes} bytes  (${f.gzip} gzip)`);
}
