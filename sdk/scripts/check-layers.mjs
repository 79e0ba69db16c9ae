#!/usr/bin/env node
// Enforces the SDK's layering, core < signal < call < callkit: a package may import
// (static import, export-from, dynamic import(), require) and depend on (package.json
// dependencies, peerDependencies, optionalDependencies) only packages below it, never
// a sibling or a higher one. Prints every offending file:line and exits 1.
//
//   node scripts/check-layers.mjs [SDK_ROOT]
//
// Imports are found with the TypeScript scanner (so strings and comments that merely
// look like imports do not count).
import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** The layers, lowest first; a package may use only those before it. */
export const LAYERS = ["core", "signal", "call", "callkit"];
const SCOPE = "@cascade/";

/** Every module specifier of `text` with its 1-based line. */
export function importsOf(text, fileName = "x.ts") {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, fileName.endsWith("x") ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  const out = [];
  const add = (lit) => {
    if (lit && ts.isStringLiteralLike(lit)) out.push({ spec: lit.text, line: sf.getLineAndCharacterOfPosition(lit.getStart(sf)).line + 1 });
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression);
    else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === "require")) add(node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** The layer a specifier names (`@cascade/x`, or a relative path into `packages/x`), or undefined. */
function layerOf(spec, fromPackage, fileDir, packagesDir) {
  if (spec.startsWith(SCOPE)) return spec.slice(SCOPE.length).split("/")[0];
  if (spec.startsWith(".")) {
    const target = relative(packagesDir, join(fileDir, spec)).split(/[\\/]/)[0];
    return target && target !== ".." && target !== fromPackage ? target : undefined;
  }
  return undefined;
}

function sourceFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(m|c)?[jt]sx?$/.test(name) && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** Why `from` may not use `to`, or undefined when it may. */
function violation(from, to) {
  const a = LAYERS.indexOf(from);
  const b = LAYERS.indexOf(to);
  if (b < 0) return `${to} is not a known layer (${LAYERS.join(" < ")})`;
  if (a < 0) return `${from} is not a known layer (${LAYERS.join(" < ")})`;
  if (b === a) return undefined;
  if (b > a) return `${from} imports ${to}, a higher layer (${LAYERS.join(" < ")})`;
  return undefined;
}

/** Checks the SDK at `root`; returns the offences as "file:line: message". */
export function checkLayers(root) {
  const packagesDir = join(root, "packages");
  const problems = [];
  for (const pkg of readdirSync(packagesDir).sort()) {
    const dir = join(packagesDir, pkg);
    if (!statSync(dir).isDirectory()) continue;
    if (!LAYERS.includes(pkg)) {
      problems.push(`${relative(root, dir)}: not a known layer (${LAYERS.join(" < ")})`);
      continue;
    }
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      const text = readFileSync(manifest, "utf8");
      const json = JSON.parse(text);
      for (const field of ["dependencies", "peerDependencies", "optionalDependencies", "devDependencies"]) {
        for (const dep of Object.keys(json[field] ?? {})) {
          if (!dep.startsWith(SCOPE)) continue;
          const to = dep.slice(SCOPE.length);
          const why = to === pkg ? `${pkg} depends on itself` : violation(pkg, to);
          if (why) {
            const line = text.split("\n").findIndex((l) => l.includes(`"${dep}"`)) + 1;
            problems.push(`${relative(root, manifest)}:${line}: ${field} ${dep}: ${why}`);
          }
        }
      }
    }
    for (const file of sourceFiles(join(dir, "src"))) {
      for (const { spec, line } of importsOf(readFileSync(file, "utf8"), file)) {
        const to = layerOf(spec, pkg, join(file, ".."), packagesDir);
        if (to === undefined || to === pkg) continue;
        const why = violation(pkg, to);
        if (why) problems.push(`${relative(root, file)}:${line}: ${spec}: ${why}`);
      }
    }
  }
  return problems;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = process.argv[2] ?? join(fileURLToPath(import.meta.url), "..", "..");
  const problems = checkLayers(root);
  if (problems.length > 0) {
    console.error(`layering broken (${LAYERS.join(" < ")}):`);
    for (const p of problems) console.error(`  ${p}`);
    process.exit(1);
  }
  console.log(`layers ok: ${LAYERS.join(" < ")}`);
}
