import { hashSize } from "./merkle-tree.js";
import { tileWidth } from "./tile-path.js";

/** The byte length of a full tile: 256 hashes. */
export const fullTileBytes = tileWidth * hashSize;

/**
 * Tiles a cache holds unless told otherwise: 2 MiB of hashes (twice that
 * with the interior nodes proofs remember for them). Every level-1 tile of a
 * log of 16M leaves fits, with room for the level-0 tiles proved lately.
 */
export const defaultFullTileCapacity = 256;

/**
 * The most recently used full tiles, by (level, index). A full tile (256
 * hashes) never changes once committed, so serving it from memory is always
 * correct; a partial tile (the right edge of a level) grows with the log, so
 * it is never held here: `remember` ignores anything shorter than a full tile.
 *
 * Proofs read the few upper-level tiles on every request (every leaf's path
 * crosses them) and one random level-0 tile: the LRU order keeps the former.
 * Cached bytes are shared with callers, who must not modify them.
 */
export class FullTileCache {
  readonly #capacity: number;
  /** Insertion order is recency: a hit is moved to the end, the first key is the least recent. */
  readonly #tiles = new Map<string, Uint8Array>();

  constructor(capacity = defaultFullTileCapacity) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError("a tile cache holds at least one tile");
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#tiles.size;
  }

  /** The full tile (level, index) if it is held. */
  get(level: number, index: number): Uint8Array | undefined {
    const key = keyOf(level, index);
    const tile = this.#tiles.get(key);
    if (tile !== undefined) {
      this.#tiles.delete(key);
      this.#tiles.set(key, tile);
    }
    return tile;
  }

  /**
   * Holds `hashes` as tile (level, index) when it is a full tile, committed:
   * callers must never remember a tile read inside a transaction that may
   * still roll back. Partial tiles are ignored.
   */
  remember(level: number, index: number, hashes: Uint8Array): void {
    if (hashes.length !== fullTileBytes) return;
    const key = keyOf(level, index);
    this.#tiles.delete(key);
    this.#tiles.set(key, hashes);
    if (this.#tiles.size > this.#capacity) {
      const oldest = this.#tiles.keys().next().value as string;
      this.#tiles.delete(oldest);
    }
  }
}

function keyOf(level: number, index: number): string {
  return `${level}/${index}`;
}
