import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
// @ts-expect-error: a plain ES module without declarations
import { checkLayers, importsOf } from "../check-layers.mjs";

const script = fileURLToPath(new URL("../check-layers.mjs", import.meta.url));
const sdk = fileURLToPath(new URL("../..", import.meta.url));
let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

/** A fixture SDK tree from {path: content}. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "layers-"));
  dirs.push(root);
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

const ok = {
  "packages/core/package.json": `{"name":"@cascade/core"}`,
  "packages/core/src/index.ts": `export const x = 1;\n`,
  "packages/signal/package.json": `{"name":"@cascade/signal"}`,
  "packages/signal/src/index.ts": `export type { X } from "./x.js";\n`,
  "packages/call/package.json": `{"name":"@cascade/call","dependencies":{"@cascade/core":"0.1.0","@cascade/signal":"0.1.0"}}`,
  "packages/call/src/index.ts": `import { x } from "@cascade/core";\nimport type { S } from "@cascade/signal";\n// import "@cascade/callkit" in a comment does not count\nconst s = "@cascade/callkit";\n`,
  "packages/callkit/package.json": `{"name":"@cascade/callkit","dependencies":{"@cascade/call":"0.1.0"}}`,
  "packages/callkit/src/index.ts": `export * from "@cascade/call";\n`,
};

describe("check-layers", () => {
  it("passes a tree that keeps the order, and the SDK itself", () => {
    expect(checkLayers(tree(ok))).toEqual([]);
    expect(checkLayers(sdk)).toEqual([]);
  });

  it("fails on upward imports of every form, listing file:line", () => {
    const root = tree({
      ...ok,
      "packages/core/src/bad.ts": `const a = 1;\nimport { Call } from "@cascade/call";\nexport { K } from "@cascade/callkit";\nconst m = await import("@cascade/signal");\ntype T = import("@cascade/call").Call;\n`,
      "packages/signal/src/rel.ts": `\n\nimport { y } from "../../call/src/index.js";\n`,
    });
    const problems: string[] = checkLayers(root);
    expect(problems).toEqual([
      expect.stringMatching(/^packages\/core\/src\/bad\.ts:2: @cascade\/call: core imports call/),
      expect.stringMatching(/^packages\/core\/src\/bad\.ts:3: @cascade\/callkit/),
      expect.stringMatching(/^packages\/core\/src\/bad\.ts:4: @cascade\/signal/),
      expect.stringMatching(/^packages\/core\/src\/bad\.ts:5: @cascade\/call/),
      expect.stringMatching(/^packages\/signal\/src\/rel\.ts:3: \.\.\/\.\.\/call\/src\/index\.js: signal imports call/),
    ]);
    const run = spawnSync(process.execPath, [script, root], { encoding: "utf8" });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("packages/core/src/bad.ts:2");
  });

  it("fails on a package.json dependency that breaks the order", () => {
    const root = tree({ ...ok, "packages/signal/package.json": `{\n  "name": "@cascade/signal",\n  "dependencies": {\n    "@cascade/call": "0.1.0"\n  }\n}` });
    expect(checkLayers(root)).toEqual([expect.stringMatching(/^packages\/signal\/package\.json:4: dependencies @cascade\/call: signal imports call/)]);
  });

  it("fails on a package that is no known layer", () => {
    const root = tree({ ...ok, "packages/extra/src/index.ts": `export {};\n` });
    expect(checkLayers(root)).toEqual([expect.stringContaining("packages/extra: not a known layer")]);
  });

  it("reads require() and import-equals too", () => {
    expect(importsOf(`const a = require("@cascade/a");\nimport b = require("@cascade/b");\n`).map((i: { spec: string }) => i.spec)).toEqual(["@cascade/a", "@cascade/b"]);
  });
});

describe("API.md", () => {
  it("is what the declarations give (npm run docs regenerates it)", () => {
    const out = execFileSync(process.execPath, [join(sdk, "scripts/api-md.mjs"), "--check"], { cwd: sdk, encoding: "utf8" });
    expect(out).toContain("up to date");
  }, 60_000);
});
