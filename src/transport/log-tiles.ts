import { Rejection } from "../errors/reason.js";
import type { NodeResponse } from "../http/node-http.js";
import type { LedgerStore } from "../ledger/store.js";
import { hashSize } from "../tlog/merkle-tree.js";
import { parseTilePath, tileWidth } from "../tlog/tile-path.js";

/** Entry bundles are sequences of uint16-length-prefixed entries: an entry is at most this long. */
const maxEntryBytes = 0xffff;

/**
 * GET /log/tile/<L>/<N>[.p/<W>] and /log/tile/entries/<N>[.p/<W>]: the log in
 * the C2SP tlog-tiles layout, so that a client who knows only that spec can
 * verify inclusion and consistency from the checkpoint and tiles alone. Tiles
 * are immutable at a given width, so they are served with long-lived cache
 * headers. Entry bundles hold every receipt (every tenant's actions and
 * nonces), so they are served only when `entries` is on.
 */
export async function serveLogTile(
  path: string,
  res: NodeResponse,
  deps: { readonly store: LedgerStore; readonly entries: boolean },
): Promise<void> {
  const parsed = parseTilePath(path.slice("/log/".length));
  if (parsed === undefined) throw new Rejection("tile_not_found", "no such tile path; see https://c2sp.org/tlog-tiles");
  if (parsed.kind === "entries") {
    if (!deps.entries) {
      throw new Rejection("tile_not_found", "entry bundles are not served here (OPENEXEC_LOG_ENTRIES=off)");
    }
    const start = parsed.index * tileWidth;
    if (start + parsed.width > (await deps.store.logSize())) {
      throw new Rejection("tile_not_found", "the log has no such entry bundle (yet)");
    }
    const entries = await deps.store.readEntries(start, start + parsed.width);
    if (entries.length !== parsed.width) throw new Rejection("tile_not_found", "the log has no such entry bundle");
    const bundle = Buffer.alloc(entries.reduce((sum, entry) => sum + 2 + entry.length, 0));
    let offset = 0;
    for (const entry of entries) {
      if (entry.length > maxEntryBytes) throw new Error("an entry is too long for an entry bundle");
      offset = bundle.writeUInt16BE(entry.length, offset);
      bundle.set(entry, offset);
      offset += entry.length;
    }
    writeImmutable(res, bundle);
    return;
  }
  const { level, index, width } = parsed.tile;
  const [stored] = await deps.store.readTiles([{ level, index }]);
  // A tile only grows: its first W hashes are the partial tile of width W.
  if (stored === undefined || stored.length < width * hashSize) {
    throw new Rejection("tile_not_found", "the log has no such tile (yet)");
  }
  writeImmutable(res, Buffer.from(stored.buffer, stored.byteOffset, width * hashSize));
}

function writeImmutable(res: NodeResponse, body: Buffer): void {
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": body.length,
    "cache-control": "public, max-age=31536000, immutable",
    "x-content-type-options": "nosniff",
  });
  res.end(body);
}
