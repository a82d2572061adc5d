import { fullTileBytes } from "./full-tile-cache.js";
import { emptyRoot, hashSize, nodeHash } from "./merkle-tree.js";
import { type LeafRange, rangeNodes, type TreeNode } from "./proof-plan.js";
import { hashesAtLevel, tileHeight, tileWidth } from "./tile-path.js";

/** A tile's hashes as stored: `width` hashes of 32 bytes, concatenated. */
export interface TileHashes {
  readonly level: number;
  readonly index: number;
  /** width * 32 bytes. */
  readonly hashes: Uint8Array;
}

/** Where stored tiles are read from: the newest stored version of each (a tile only ever grows). */
export interface TileReader {
  /**
   * One entry per id, undefined when no such tile is stored. The bytes
   * returned are never modified afterwards (by anyone): a full tile's interior
   * nodes are remembered by its bytes object.
   */
  readTiles(ids: readonly { readonly level: number; readonly index: number }[]): Promise<(Uint8Array | undefined)[]>;
}

export class TileError extends Error {
  override readonly name = "TileError";
}

/**
 * The right edge of a tiled tree, in memory: the partial tile of every level.
 * Appending leaves yields the tiles to persist (in the same transaction as the
 * leaves); the root is computed from the edge alone. Restoring it at start
 * reads one tile per level, never every leaf.
 */
export class TreeEdge {
  #size = 0;
  /** Per level, the hashes of its partial tile (fewer than 256). */
  readonly #edges: Buffer[][] = [];

  /** The edge of a tree of `size` leaves from its stored partial tiles (`partial(level)` reads one). */
  static restore(size: number, partial: (level: number, index: number) => Uint8Array | undefined): TreeEdge {
    const edge = new TreeEdge();
    for (let level = 0; hashesAtLevel(size, level) > 0; level++) {
      const count = hashesAtLevel(size, level);
      const width = count % tileWidth;
      const hashes: Buffer[] = [];
      if (width > 0) {
        const stored = partial(level, Math.floor(count / tileWidth));
        if (stored === undefined || stored.length < width * hashSize) {
          throw new TileError(
            `tile ${level}/${Math.floor(count / tileWidth)} is missing or holds under ${width} hashes`,
          );
        }
        for (let i = 0; i < width; i++) hashes.push(Buffer.from(stored.subarray(i * hashSize, (i + 1) * hashSize)));
      }
      edge.#edges[level] = hashes;
    }
    edge.#size = size;
    return edge;
  }

  get size(): number {
    return this.#size;
  }

  /** An independent copy: append to it, and keep this one if the append is not committed. */
  clone(): TreeEdge {
    const copy = new TreeEdge();
    copy.#size = this.#size;
    for (const [level, hashes] of this.#edges.entries()) copy.#edges[level] = [...(hashes ?? [])];
    return copy;
  }

  /**
   * Appends leaf hashes; returns every tile they changed, each with all its
   * hashes so far (full tiles once, at 256; the partial edge of each level).
   */
  append(leafHashes: readonly Uint8Array[]): TileHashes[] {
    const changed = new Map<string, TileHashes>();
    const push = (level: number, hash: Buffer): void => {
      const edge = this.#edges[level] ?? [];
      this.#edges[level] = edge;
      edge.push(hash);
      const index = Math.floor((hashesAtLevel(this.#size, level) - 1) / tileWidth);
      changed.set(`${level}/${index}`, { level, index, hashes: Buffer.concat(edge) });
      if (edge.length === tileWidth) {
        this.#edges[level] = [];
        push(level + 1, foldLevels(edge, tileHeight));
      }
    };
    for (const leaf of leafHashes) {
      if (leaf.length !== hashSize) throw new TileError(`a leaf hash must be ${hashSize} bytes`);
      this.#size++;
      push(0, Buffer.from(leaf));
    }
    return [...changed.values()];
  }

  /** MTH of the whole tree, from the edge alone. */
  root(): Buffer {
    if (this.#size === 0) return emptyRoot();
    return foldRange(
      rangeNodes({ start: 0, end: this.#size }).map((node) => {
        const level = Math.floor(node.height / tileHeight);
        const span = 2 ** (node.height % tileHeight);
        const edge = this.#edges[level] ?? [];
        // The edge of `level` starts at the last multiple of 256 level-hashes.
        const edgeStart = hashesAtLevel(this.#size, level) - edge.length;
        const first = node.index * span - edgeStart;
        return foldLevels(edge.slice(first, first + span), node.height % tileHeight);
      }),
    );
  }
}

/**
 * The proof elements of `plan` (MTH of each range) read from stored tiles:
 * the complete subtrees each range folds, each taken from the one tile that
 * holds it and hashed up at most 7 levels. O(log size) tiles, one read.
 */
export async function proofFromTiles(plan: readonly LeafRange[], reader: TileReader): Promise<Buffer[]> {
  const nodesByRange = plan.map((range) => rangeNodes(range));
  const places = nodesByRange.flat().map(placeOf);
  const ids = [...new Map(places.map((p) => [`${p.level}/${p.tile}`, { level: p.level, index: p.tile }])).values()];
  const tiles = await reader.readTiles(ids);
  const byKey = new Map(ids.map((id, i) => [`${id.level}/${id.index}`, tiles[i]]));
  let next = 0;
  return nodesByRange.map((nodes) =>
    foldRange(
      nodes.map(() => {
        const place = places[next++] as NodePlace;
        const tile = byKey.get(`${place.level}/${place.tile}`);
        const end = (place.offset + place.span) * hashSize;
        if (tile === undefined || tile.length < end) {
          throw new TileError(`tile ${place.level}/${place.tile} is missing or too short for this proof`);
        }
        if (tile.length === fullTileBytes) return fullTileNode(tile, place.offset, place.lift);
        // Views, not copies: nodeHash copies its inputs, and only the folded roots are kept.
        const hashes: Uint8Array[] = [];
        for (let at = place.offset * hashSize; at < end; at += hashSize) hashes.push(tile.subarray(at, at + hashSize));
        return foldLevels(hashes, place.lift);
      }),
    ),
  );
}

/**
 * The interior nodes of full tiles, by the tile's bytes: lift 1 (128 hashes)
 * then lift 2 (64) ... up to lift 8 (the tile's root), 255 hashes in one
 * buffer. A full tile never changes, so neither do these; keyed by the bytes
 * object itself, they live exactly as long as whoever holds the tile (the
 * storage's full-tile cache), and the upper tiles every proof crosses are
 * hashed once, not once per proof.
 */
const fullTileNodes = new WeakMap<Uint8Array, Buffer>();

/** The root of the 2^lift hashes from `offset` (a multiple of 2^lift) of a full tile: a copy. */
function fullTileNode(tile: Uint8Array, offset: number, lift: number): Buffer {
  if (lift === 0) return Buffer.from(tile.subarray(offset * hashSize, (offset + 1) * hashSize));
  let nodes = fullTileNodes.get(tile);
  if (nodes === undefined) {
    nodes = Buffer.alloc((tileWidth - 1) * hashSize);
    let below = tile;
    let at = 0;
    for (let width = tileWidth / 2; width >= 1; width /= 2) {
      const level = nodes.subarray(at * hashSize, (at + width) * hashSize);
      for (let j = 0; j < width; j++) {
        level.set(
          nodeHash(
            below.subarray(2 * j * hashSize, (2 * j + 1) * hashSize),
            below.subarray((2 * j + 1) * hashSize, (2 * j + 2) * hashSize),
          ),
          j * hashSize,
        );
      }
      below = level;
      at += width;
    }
    fullTileNodes.set(tile, nodes);
  }
  // Lift L starts after the 128 + 64 + ... hashes of lifts 1..L-1: 256 - 2^(9-L).
  const index = tileWidth - 2 ** (tileHeight + 1 - lift) + (offset >> lift);
  return Buffer.from(nodes.subarray(index * hashSize, (index + 1) * hashSize));
}

/** Where a complete subtree's hashes sit: `span` entries from `offset` in tile (level, tile), hashed up `lift` levels. */
interface NodePlace {
  readonly level: number;
  readonly tile: number;
  readonly offset: number;
  readonly span: number;
  readonly lift: number;
}

function placeOf(node: TreeNode): NodePlace {
  const level = Math.floor(node.height / tileHeight);
  const lift = node.height % tileHeight;
  const span = 2 ** lift;
  const first = node.index * span;
  return { level, tile: Math.floor(first / tileWidth), offset: first % tileWidth, span, lift };
}

/** The root of 2^levels hashes of one tree level: pair neighbours, `levels` times. */
function foldLevels(hashes: readonly Uint8Array[], levels: number): Buffer {
  let level = hashes;
  for (let i = 0; i < levels; i++) {
    const up: Buffer[] = [];
    for (let j = 0; j + 1 < level.length; j += 2) up.push(nodeHash(level[j] as Uint8Array, level[j + 1] as Uint8Array));
    level = up;
  }
  if (level.length !== 1) throw new TileError("a subtree must fold to one hash");
  // Unfolded, the one hash may be a view into a tile: the caller gets its own copy.
  return levels === 0 ? Buffer.from(level[0] as Uint8Array) : (level[0] as Buffer);
}

/** node(n1, node(n2, ... nk)): the root of a range from its complete subtrees, left to right. */
function foldRange(nodes: readonly Buffer[]): Buffer {
  let root = nodes.at(-1);
  if (root === undefined) return emptyRoot();
  for (let i = nodes.length - 2; i >= 0; i--) root = nodeHash(nodes[i] as Buffer, root);
  return root;
}
