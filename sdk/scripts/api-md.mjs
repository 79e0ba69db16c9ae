#!/usr/bin/env node
// Writes sdk/API.md, the Markdown API reference, from the packages' declarations
// (typedoc + typedoc-plugin-markdown, one page per package, joined in layer order).
//   node scripts/api-md.mjs           regenerate API.md
//   node scripts/api-md.mjs --check   exit 1 when API.md differs from what the sources give
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LAYERS } from "./check-layers.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const target = join(root, "API.md");
const out = mkdtempSync(join(tmpdir(), "cascade-api-"));
try {
  execFileSync(
    process.execPath,
    [
      join(root, "node_modules/typedoc/bin/typedoc"),
      "--plugin", "typedoc-plugin-markdown",
      "--out", out,
      "--router", "module",
      "--hidePageHeader", "--hideBreadcrumbs", "--disableSources", "--excludeProtected",
      "--excludeExternals", "--externalPattern", "**/node_modules/**",
      "--useCodeBlocks", "--expandObjects",
      "--parametersFormat", "table",
      "--interfacePropertiesFormat", "table",
      "--classPropertiesFormat", "table",
      "--typeDeclarationFormat", "table",
      "--logLevel", "Error",
    ],
    { cwd: root, stdio: ["ignore", "ignore", "inherit"] },
  );
  const parts = [
    "# Cascade client SDK: API reference",
    "",
    "Generated from the packages' declarations by `npm run docs` (sdk/scripts/api-md.mjs); do not edit.",
    `Layers, lowest first: ${LAYERS.map((p) => `[@cascade/${p}](#cascade${p})`).join(" < ")}.`,
    "",
  ];
  for (const pkg of LAYERS) {
    const file = join(out, "@cascade", `${pkg}.md`);
    if (!existsSync(file)) continue;
    const text = readFileSync(file, "utf8")
      // One file: links to another package's page become links to its heading.
      .replace(/\]\((?:\.\.\/)?(?:@cascade\/)?(?:core|signal|call|callkit)\.md(#[^)]*)?\)/g, (_m, anchor) => `](${anchor ?? "#"})`)
      // One level down (the file's title is a package); below h6, bold text.
      .replace(/^(#+) (.*)$/gm, (_m, h, title) => (h.length >= 6 ? `**${title}**` : `#${h} ${title}`));
    parts.push(text.trim(), "");
  }
  const md = parts.join("\n");
  if (process.argv.includes("--check")) {
    const current = existsSync(target) ? readFileSync(target, "utf8") : "";
    if (current !== md) {
      console.error("sdk/API.md is stale: run `npm run docs` in sdk/ and commit it");
      process.exit(1);
    }
    console.log("sdk/API.md is up to date");
  } else {
    writeFileSync(target, md);
    console.log(`wrote ${target} (${md.length} bytes)`);
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
