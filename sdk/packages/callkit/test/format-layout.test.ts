import { describe, expect, it } from "vitest";
import { endReasonText, formatDuration, initials } from "../src/format.js";
import { bestGrid } from "../src/layout.js";

describe("formatDuration", () => {
  it("gives mm:ss below an hour and h:mm:ss from there", () => {
    expect(formatDuration(0)).toBe("00:00");
    expect(formatDuration(59_999)).toBe("00:59");
    expect(formatDuration(61_000)).toBe("01:01");
    expect(formatDuration(3_600_000 + 5_000)).toBe("1:00:05");
    expect(formatDuration(-5_000)).toBe("00:00");
  });
});

describe("initials", () => {
  it("takes the first letters of up to two words", () => {
    expect(initials("alice")).toBe("A");
    expect(initials("Bob Marley")).toBe("BM");
    expect(initials("carol.smith@example.test")).toBe("CS");
    expect(initials("  ")).toBe("?");
  });
});

describe("endReasonText", () => {
  it("words each reason from this side's point of view", () => {
    expect(endReasonText("declined", "bob", "outgoing")).toBe("bob declined the call");
    expect(endReasonText("declined", "bob", "incoming")).toBe("You declined the call");
    expect(endReasonText("timeout", "bob", "incoming")).toBe("Missed call from bob");
    expect(endReasonText("busy", "bob", "outgoing")).toBe("bob is busy");
  });
});

describe("bestGrid", () => {
  it("puts four tiles in two rows of two in a landscape box", () => {
    const g = bestGrid(4, 1200, 700, 10);
    expect([g.cols, g.rows]).toEqual([2, 2]);
    expect(g.tileWidth / g.tileHeight).toBeCloseTo(16 / 9);
  });

  it("stacks two tiles in a portrait box (phones) with 3:4 tiles", () => {
    const g = bestGrid(2, 390, 700, 10);
    expect([g.cols, g.rows]).toEqual([1, 2]);
    expect(g.tileWidth / g.tileHeight).toBeCloseTo(3 / 4);
  });

  it("fills a wide box with one row when that makes tiles largest", () => {
    expect(bestGrid(3, 1800, 400, 10).cols).toBe(3);
  });

  it("never overflows the box", () => {
    for (const n of [1, 2, 3, 5, 7, 9, 12]) {
      const g = bestGrid(n, 1000, 600, 8);
      expect(g.cols * g.tileWidth + (g.cols - 1) * 8).toBeLessThanOrEqual(1000 + 1e-6);
      expect(g.rows * g.tileHeight + (g.rows - 1) * 8).toBeLessThanOrEqual(600 + 1e-6);
      expect(g.cols * g.rows).toBeGreaterThanOrEqual(n);
    }
  });

  it("falls back to a square-ish grid before layout", () => {
    expect(bestGrid(5, 0, 0, 8)).toEqual({ cols: 3, rows: 2, tileWidth: 0, tileHeight: 0 });
  });
});
