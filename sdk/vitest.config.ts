// Unit tests of every package (packages/*/test) and of the scripts (scripts/test),
// on the sources: `@cascade/x` resolves to packages/x/src, so no build is needed.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const src = (p: string) => fileURLToPath(new URL(`./packages/${p}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      "@cascade/core": src("core"),
      "@cascade/signal": src("signal"),
      "@cascade/call": src("call"),
      "@cascade/callkit": src("callkit"),
    },
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "scripts/test/**/*.test.{ts,mjs}"],
    environment: "node",
    testTimeout: 10_000,
  },
});
