// The meeting grid's arithmetic: how many columns make n tiles largest in a box.

export interface GridChoice {
  cols: number;
  rows: number;
  tileWidth: number;
  tileHeight: number;
}

/**
 * Best column count for `count` tiles in a `width`×`height` box with `gap` between tiles.
 * Tiles are 16:9 in a landscape box and 3:4 in a portrait one (phones). Without a
 * measurable box (not laid out yet) it returns a square-ish grid and zero tile sizes.
 */
export function bestGrid(count: number, width: number, height: number, gap: number): GridChoice {
  const n = Math.max(1, Math.floor(count));
  if (!(width > 0 && height > 0)) {
    const cols = Math.ceil(Math.sqrt(n));
    return { cols, rows: Math.ceil(n / cols), tileWidth: 0, tileHeight: 0 };
  }
  const aspect = width >= height ? 16 / 9 : 3 / 4;
  let best: GridChoice = { cols: 1, rows: n, tileWidth: 0, tileHeight: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    let tileWidth = (width - gap * (cols - 1)) / cols;
    let tileHeight = tileWidth / aspect;
    if (tileHeight * rows + gap * (rows - 1) > height) {
      tileHeight = (height - gap * (rows - 1)) / rows;
      tileWidth = tileHeight * aspect;
    }
    if (tileWidth > 0 && tileWidth * tileHeight > best.tileWidth * best.tileHeight) {
      best = { cols, rows, tileWidth, tileHeight };
    }
  }
  return best;
}
