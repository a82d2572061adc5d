#!/usr/bin/env python3
"""An independent verifier of OpenExec's transparency log, written from the
C2SP specifications alone (signed-note, tlog-checkpoint, tlog-tiles) and
RFC 9162, sharing no code with the server.

Given the log's URL prefix, its origin, the executor's public key (PEM) and a
receipt (its exact bytes and log index), it fetches the checkpoint and the
tiles it needs over HTTP, verifies the checkpoint's Ed25519 signature, and
checks that the receipt is a leaf of the checkpoint's tree.

Usage: tlog_tiles_verify.py PREFIX ORIGIN PUBKEY.pem LOG_INDEX RECEIPT_BASE64
Prints one JSON line; exits 0 when the receipt is included, 1 when not.
"""

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


class Invalid(Exception):
    pass


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


# --- signed-note and tlog-checkpoint -------------------------------------------

def key_hash(name, public_key_raw):
    # signed-note: SHA-256(key name || 0x0A || signature type 0x01 || public key), first 4 bytes.
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key_raw).digest()[:4]


def verify_checkpoint(note, origin, public_key):
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    text = note.decode("utf-8")
    separator = text.rfind("\n\n")
    if separator < 0:
        raise Invalid("the checkpoint is not a signed note")
    body = text[: separator + 1]
    verified = False
    for line in text[separator + 2 :].split("\n"):
        if line == "":
            continue
        if not line.startswith("\u2014 "):
            raise Invalid("malformed signature line")
        name, _, encoded = line[2:].rpartition(" ")
        blob = base64.b64decode(encoded, validate=True)
        if name != origin or blob[:4] != key_hash(name, raw) or len(blob) != 68:
            continue
        try:
            public_key.verify(blob[4:], body.encode("utf-8"))
            verified = True
        except InvalidSignature:
            raise Invalid("the checkpoint signature does not verify")
    if not verified:
        raise Invalid("no signature by the executor's key for this origin")
    lines = body.split("\n")
    if lines[0] != origin:
        raise Invalid("the checkpoint is for another origin")
    size = int(lines[1])
    if str(size) != lines[1]:
        raise Invalid("malformed tree size")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32:
        raise Invalid("malformed root hash")
    return size, root


# --- tlog-tiles ----------------------------------------------------------------

def tile_index_path(n):
    parts = ["%03d" % (n % 1000)]
    n //= 1000
    while n > 0:
        parts.insert(0, "x%03d" % (n % 1000))
        n //= 1000
    return "/".join(parts)


class Tiles:
    """Reads the hashes of a tree of `size` leaves from the log's tiles."""

    def __init__(self, prefix, size):
        self.prefix = prefix.rstrip("/")
        self.size = size
        self.cache = {}
        self.fetched = 0

    def tile(self, level, index):
        key = (level, index)
        if key not in self.cache:
            # Entries of `level` that the tree of `size` has: floor(size / 256**level).
            count = self.size // (TILE_WIDTH ** level)
            width = min(TILE_WIDTH, count - index * TILE_WIDTH)
            if width <= 0:
                raise Invalid("a tile beyond the tree was needed")
            path = "tile/%d/%s" % (level, tile_index_path(index))
            if width < TILE_WIDTH:
                path += ".p/%d" % width
            data = fetch("%s/%s" % (self.prefix, path))
            self.fetched += 1
            if len(data) != width * 32:
                raise Invalid("tile %s has %d bytes, not %d" % (path, len(data), width * 32))
            self.cache[key] = data
        return self.cache[key]

    def node(self, height, index):
        """The hash of the complete subtree of 2**height leaves starting at leaf index * 2**height."""
        level, rest = divmod(height, TILE_HEIGHT)
        first = index << rest  # in units of level-`level` hashes
        tile = self.tile(level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        hashes = [tile[(offset + i) * 32 : (offset + i + 1) * 32] for i in range(1 << rest)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def mth(self, start, end):
        """MTH(D[start:end]) (RFC 9162 §2.1.1), from complete subtrees wherever possible."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self.node(n.bit_length() - 1, start // n)
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self.mth(start, start + k), self.mth(start + k, end))


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def inclusion_path(tiles, index, start, end):
    """PATH(m, D[start:end]) of RFC 9162 §2.1.3.1, leaf-first."""
    n = end - start
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if index - start < k:
        return inclusion_path(tiles, index, start, start + k) + [tiles.mth(start + k, end)]
    return inclusion_path(tiles, index, start + k, end) + [tiles.mth(start, start + k)]


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main(argv):
    prefix, origin, pem_path, index_text, receipt_b64 = argv[1:6]
    public_key = load_pem_public_key(open(pem_path, "rb").read())
    if not isinstance(public_key, Ed25519PublicKey):
        raise Invalid("the public key is not Ed25519")
    index = int(index_text)
    receipt = base64.b64decode(receipt_b64, validate=True)
    size, root = verify_checkpoint(fetch(prefix.rstrip("/") + "/checkpoint"), origin, public_key)
    tiles = Tiles(prefix, size)
    leaf = leaf_hash(receipt)
    # The leaf itself is in its level-0 tile, and the path from it reaches the signed root.
    stored = tiles.node(0, index)
    path = inclusion_path(tiles, index, 0, size)
    included = stored == leaf and verify_inclusion(leaf, index, size, path, root)
    print(json.dumps({"included": included, "tree_size": size, "tiles_fetched": tiles.fetched}))
    return 0 if included else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Invalid, urllib.error.URLError, ValueError) as error:
        print(json.dumps({"included": False, "error": str(error)}))
        sys.exit(1)
