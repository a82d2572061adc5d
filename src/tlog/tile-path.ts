/**
 * Tile coordinates and paths of C2SP tlog-tiles (https://c2sp.org/tlog-tiles):
 * the tree's hashes cut into tiles of 256 (height 8). A level-0 tile holds
 * leaf hashes; entry j of level-L tile N is the root of the complete subtree
 * of 256^L leaves numbered N*256 + j. Full tiles never change; the right edge
 * of each level is a partial tile of width 1-255.
 */

/** Tile height: each tile spans 8 levels of the tree. */
export const tileHeight = 8;
/** Hashes in a full tile. */
export const tileWidth = 256;

/** One tile as served: level, index within the level, and width (256: full). */
export interface TileId {
  readonly level: number;
  readonly index: number;
  /** 1-256; below 256 only for the right edge of a level. */
  readonly width: number;
}

/** The number of level-`level` hashes (complete 256^level-leaf subtrees) in a tree of `size` leaves. */
export function hashesAtLevel(size: number, level: number): number {
  return Math.floor(size / tileWidth ** level);
}

/** The tiles a tree of `size` leaves has at `level`: full ones, then its partial edge if any. */
export function tileCountAtLevel(
  size: number,
  level: number,
): { readonly full: number; readonly partialWidth: number } {
  const count = hashesAtLevel(size, level);
  return { full: Math.floor(count / tileWidth), partialWidth: count % tileWidth };
}

/**
 * The tile path's encoding of an index: groups of three decimal digits,
 * all but the last prefixed with "x" (1234067 → "x001/x234/067").
 */
export function encodeTileIndex(index: number): string {
  let n = index;
  let path = String(n % 1000).padStart(3, "0");
  while (n >= 1000) {
    n = Math.floor(n / 1000);
    path = `x${String(n % 1000).padStart(3, "0")}/${path}`;
  }
  return path;
}

/** "tile/<L>/<N>[.p/<W>]" for a hash tile. */
export function tilePath(tile: TileId): string {
  return `tile/${tile.level}/${encodeTileIndex(tile.index)}${widthSuffix(tile.width)}`;
}

/** "tile/entries/<N>[.p/<W>]" for an entry bundle. */
export function entriesPath(index: number, width: number): string {
  return `tile/entries/${encodeTileIndex(index)}${widthSuffix(width)}`;
}

function widthSuffix(width: number): string {
  return width === tileWidth ? "" : `.p/${width}`;
}

/** A parsed tile path: a hash tile, or an entry bundle (level "entries"). */
export type ParsedTilePath =
  | { readonly kind: "hashes"; readonly tile: TileId }
  | { readonly kind: "entries"; readonly index: number; readonly width: number };

/** Levels above this hold no tile of a tree that fits in a safe integer. */
const maxLevel = 6;

/**
 * Parses what follows "tile/" in a request path. Only the canonical encoding
 * is accepted (the one tilePath writes), so one tile has one URL and one cache
 * entry; anything else is undefined.
 */
export function parseTilePath(path: string): ParsedTilePath | undefined {
  const match = /^tile\/(entries|[0-9])\/((?:x[0-9]{3}\/)*[0-9]{3})(?:\.p\/([0-9]{1,3}))?$/.exec(path);
  if (match === null) return undefined;
  const [, levelText, indexText, widthText] = match as unknown as [string, string, string, string | undefined];
  const index = Number(indexText.replaceAll("x", "").replaceAll("/", ""));
  // A partial tile is 1-255 wide; a full one has no width in its path.
  const width = widthText === undefined ? tileWidth : Number(widthText);
  if (!Number.isSafeInteger(index) || width < 1 || width > tileWidth) return undefined;
  const canonical =
    levelText === "entries" ? entriesPath(index, width) : tilePath({ level: Number(levelText), index, width });
  if (canonical !== path) return undefined;
  if (levelText === "entries") return { kind: "entries", index, width };
  const level = Number(levelText);
  if (level > maxLevel) return undefined;
  return { kind: "hashes", tile: { level, index, width } };
}
