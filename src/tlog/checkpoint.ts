import { createHash, createPublicKey, type KeyObject, sign, verify } from "node:crypto";

/**
 * Checkpoints of the receipt log (docs/TRANSPARENCY_LOG.md): the C2SP
 * tlog-checkpoint body (https://c2sp.org/tlog-checkpoint)
 *
 *   <origin>\n<tree size>\n<base64 root hash>\n
 *
 * carried in a C2SP signed note (https://c2sp.org/signed-note) with Ed25519
 * signature lines
 *
 *   \n— <key name> <base64(key ID || signature)>\n
 *
 * key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4].
 *
 * Parsing is strict: OpenExec writes exactly one form and accepts only it (no
 * extension lines, canonical base64 and decimal). Functions that sign throw
 * CheckpointError on bad arguments; functions that parse return an error
 * string, and functions that verify return undefined, for any bad note.
 */

export class CheckpointError extends Error {
  override readonly name = "CheckpointError";
}

/** A tree head: what a checkpoint body states. */
export interface Checkpoint {
  /** The log's identity; OpenExec uses the log's key name. */
  readonly origin: string;
  /** The number of leaves. */
  readonly size: number;
  /** MTH of those leaves (32 bytes). */
  readonly rootHash: Uint8Array;
}

/** One signature line of a note, not verified. */
export interface NoteSignature {
  readonly name: string;
  /** The 4-byte key ID. */
  readonly keyHash: Buffer;
  /** The signature bytes after the key ID. */
  readonly signature: Buffer;
}

/** A signed note split into its text and its signature lines, not verified. */
export interface ParsedNote {
  /** The signed text, ending in a newline, without the separating blank line. */
  readonly text: string;
  readonly signatures: readonly NoteSignature[];
}

/** A checkpoint as parsed from a signed note, with its unverified signatures. */
export interface ParsedCheckpoint extends Checkpoint {
  readonly rootHash: Buffer;
  readonly signatures: readonly NoteSignature[];
}

/** A verified checkpoint. */
export interface VerifiedCheckpoint extends Checkpoint {
  readonly rootHash: Buffer;
}

/** An Ed25519 note signer. */
export interface NoteSigner {
  /** The key name written in signature lines. */
  readonly name: string;
  readonly privateKey: KeyObject;
  /** The raw 32-byte public key of `privateKey`. */
  readonly publicKeyRaw: Uint8Array;
}

/** An Ed25519 note verifier: the key a client trusts, under its name. */
export interface NoteVerifier {
  readonly name: string;
  readonly publicKey: KeyObject;
  /** The raw 32-byte form of `publicKey`. */
  readonly publicKeyRaw: Uint8Array;
}

/** The signed-note signature type byte of Ed25519. */
export const ed25519SignatureType = 0x01;

/** Notes with more signature lines than this are refused (as golang.org/x/mod/sumdb/note does). */
export const maxNoteSignatures = 100;

const sigPrefix = "\u2014 ";
const ed25519SignatureSize = 64;

/**
 * Key names (and OpenExec origins): non-empty, well-formed, and free of Unicode
 * spaces, plus signs and control characters.
 */
export function isValidKeyName(name: string): boolean {
  return (
    typeof name === "string" &&
    name.length > 0 &&
    name.isWellFormed() &&
    !/[\s\u0085+]/u.test(name) &&
    !hasControl(name)
  );
}

/** The C2SP key ID of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || publicKeyRaw)[:4]. */
export function keyHash(name: string, publicKeyRaw: Uint8Array): Buffer {
  checkKeyName(name);
  checkRawKey(publicKeyRaw);
  return createHash("sha256")
    .update(name, "utf8")
    .update(Uint8Array.of(0x0a, ed25519SignatureType))
    .update(publicKeyRaw)
    .digest()
    .subarray(0, 4);
}

/** The verifier key string: `<name>+<hex key ID>+<base64(0x01 || publicKeyRaw)>`. */
export function verifierKey(name: string, publicKeyRaw: Uint8Array): string {
  const id = keyHash(name, publicKeyRaw).toString("hex");
  return `${name}+${id}+${Buffer.concat([Uint8Array.of(ed25519SignatureType), publicKeyRaw]).toString("base64")}`;
}

/** Parses an Ed25519 verifier key string, checking its key ID; an error string if it is not one. */
export function parseVerifierKey(
  vkey: string,
): { readonly name: string; readonly keyHash: Buffer; readonly publicKeyRaw: Buffer } | string {
  if (typeof vkey !== "string") return "a verifier key must be a string";
  // The base64 key may itself hold "+": split at the first two only.
  const first = vkey.indexOf("+");
  const second = vkey.indexOf("+", first + 1);
  if (first < 0 || second < 0) return "a verifier key is <name>+<hex key ID>+<base64 key>";
  const name = vkey.slice(0, first);
  const hashHex = vkey.slice(first + 1, second);
  const keyBase64 = vkey.slice(second + 1);
  if (!isValidKeyName(name)) return "invalid key name";
  if (!/^[0-9a-f]{8}$/.test(hashHex)) return "the key ID must be 8 lowercase hex digits";
  const key = decodeBase64(keyBase64);
  if (key === undefined || key.length !== 1 + 32) return "the key must be base64 of 33 bytes";
  if (key[0] !== ed25519SignatureType) return "not an Ed25519 key (type 0x01)";
  const publicKeyRaw = key.subarray(1);
  const id = keyHash(name, publicKeyRaw);
  if (id.toString("hex") !== hashHex) return "the key ID does not match the name and key";
  return { name, keyHash: id, publicKeyRaw };
}

/** The checkpoint body: `<origin>\n<size>\n<base64 root>\n`. */
export function formatCheckpointBody(checkpoint: Checkpoint): string {
  const { origin, size, rootHash } = checkpoint;
  if (!isValidKeyName(origin)) {
    throw new CheckpointError("the origin must be non-empty, without spaces, plus signs or control characters");
  }
  if (!Number.isSafeInteger(size) || size < 0)
    throw new CheckpointError("the size must be a non-negative safe integer");
  if (!(rootHash instanceof Uint8Array) || rootHash.length !== 32) {
    throw new CheckpointError("the root hash must be 32 bytes");
  }
  return `${origin}\n${size}\n${Buffer.from(rootHash).toString("base64")}\n`;
}

/** Parses a checkpoint body, exactly three lines; an error string if it is not one. */
export function parseCheckpointBody(text: string): VerifiedCheckpoint | string {
  if (typeof text !== "string" || !text.endsWith("\n")) return "the checkpoint body must end with a newline";
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) return "the checkpoint body has fewer than three lines";
  if (lines.length > 3) return "the checkpoint body has extension lines";
  const [origin, sizeText, rootText] = lines as [string, string, string];
  if (origin === "" || hasControl(origin) || !origin.isWellFormed()) return "invalid origin";
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeText)) return "the size must be decimal without leading zeros";
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) return "the size is too large";
  const rootHash = decodeBase64(rootText);
  if (rootHash === undefined || rootHash.length !== 32) return "the root hash must be base64 of 32 bytes";
  return { origin, size, rootHash };
}

/**
 * Signs `text` (non-empty, newline-terminated, no control characters other
 * than newline) as a signed note with one Ed25519 signature line.
 */
export function signNote(text: string, signer: NoteSigner): string {
  if (typeof text !== "string" || text === "" || !text.endsWith("\n") || !text.isWellFormed() || hasControl(text)) {
    throw new CheckpointError("note text must be non-empty, end with a newline and hold no control characters");
  }
  const { name, privateKey, publicKeyRaw } = signer;
  const id = keyHash(name, publicKeyRaw);
  if (privateKey.type !== "private" || privateKey.asymmetricKeyType !== "ed25519") {
    throw new CheckpointError("the signing key must be an Ed25519 private key");
  }
  if (!rawPublicKey(createPublicKey(privateKey)).equals(publicKeyRaw)) {
    throw new CheckpointError("publicKeyRaw is not the public key of privateKey");
  }
  const signature = sign(null, Buffer.from(text, "utf8"), privateKey);
  return `${text}\n${sigPrefix}${name} ${Buffer.concat([id, signature]).toString("base64")}\n`;
}

/**
 * Splits a signed note into its text and signature lines, checking the syntax
 * of C2SP signed-note (nothing is verified); an error string if malformed.
 */
export function parseSignedNote(note: string): ParsedNote | string {
  if (typeof note !== "string") return "a note must be a string";
  if (!note.isWellFormed() || hasControl(note)) return "the note holds control characters or is not well-formed";
  const split = note.lastIndexOf("\n\n");
  if (split < 0) return "the note has no blank line before its signatures";
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block === "") return "the note has no signature lines";
  if (!block.endsWith("\n")) return "the note does not end with a newline";
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > maxNoteSignatures) return `the note has more than ${maxNoteSignatures} signatures`;
  const signatures: NoteSignature[] = [];
  for (const line of lines) {
    if (!line.startsWith(sigPrefix)) return "a signature line must start with an em dash and a space";
    const rest = line.slice(sigPrefix.length);
    const space = rest.indexOf(" ");
    if (space < 0) return "a signature line must be a key name, a space and a signature";
    const name = rest.slice(0, space);
    if (!isValidKeyName(name)) return "invalid key name in a signature line";
    const bytes = decodeBase64(rest.slice(space + 1));
    if (bytes === undefined || bytes.length < 5) return "a signature must be base64 of a key ID and signature bytes";
    signatures.push({ name, keyHash: bytes.subarray(0, 4), signature: bytes.subarray(4) });
  }
  return { text, signatures };
}

/**
 * Verifies a signed note against one trusted key and returns its text, or
 * undefined. Per C2SP signed-note, lines from other keys (other name or key
 * ID) are ignored; at least one line must be from this key, and every line
 * from this key must verify.
 */
export function verifyNote(note: string, verifier: NoteVerifier): string | undefined {
  const id = verifierKeyHash(verifier);
  const parsed = parseSignedNote(note);
  if (typeof parsed === "string") return undefined;
  const data = Buffer.from(parsed.text, "utf8");
  const ours = parsed.signatures.filter((s) => s.name === verifier.name && s.keyHash.equals(id));
  if (ours.length === 0) return undefined;
  for (const { signature } of ours) {
    if (signature.length !== ed25519SignatureSize) return undefined;
    if (!verify(null, data, verifier.publicKey, signature)) return undefined;
  }
  return parsed.text;
}

/** Signs a checkpoint body (as formatCheckpointBody makes it): the full signed note. */
export function signCheckpoint(body: string, signer: NoteSigner): string {
  const checkpoint = parseCheckpointBody(body);
  if (typeof checkpoint === "string") throw new CheckpointError(`not a checkpoint body: ${checkpoint}`);
  if (!isValidKeyName(checkpoint.origin)) throw new CheckpointError("the origin is not a valid key name");
  return signNote(body, signer);
}

/** Parses a signed checkpoint without verifying it; an error string if malformed. */
export function parseSignedCheckpoint(note: string): ParsedCheckpoint | string {
  const parsed = parseSignedNote(note);
  if (typeof parsed === "string") return parsed;
  const checkpoint = parseCheckpointBody(parsed.text);
  if (typeof checkpoint === "string") return checkpoint;
  return { ...checkpoint, signatures: parsed.signatures };
}

/**
 * Verifies a signed checkpoint against one trusted key (see verifyNote) and,
 * when `expectedOrigin` is given, its origin; the checkpoint, or undefined.
 */
export function verifySignedCheckpoint(
  note: string,
  verifier: NoteVerifier,
  expectedOrigin?: string,
): VerifiedCheckpoint | undefined {
  const text = verifyNote(note, verifier);
  if (text === undefined) return undefined;
  const checkpoint = parseCheckpointBody(text);
  if (typeof checkpoint === "string") return undefined;
  if (expectedOrigin !== undefined && checkpoint.origin !== expectedOrigin) return undefined;
  return checkpoint;
}

/** The key ID of a verifier, after checking that its two key forms agree. */
function verifierKeyHash(verifier: NoteVerifier): Buffer {
  const { name, publicKey, publicKeyRaw } = verifier;
  const id = keyHash(name, publicKeyRaw);
  if (publicKey.type !== "public" || publicKey.asymmetricKeyType !== "ed25519") {
    throw new CheckpointError("the verification key must be an Ed25519 public key");
  }
  if (!rawPublicKey(publicKey).equals(publicKeyRaw)) {
    throw new CheckpointError("publicKeyRaw is not the raw form of publicKey");
  }
  return id;
}

function rawPublicKey(publicKey: KeyObject): Buffer {
  const { x } = publicKey.export({ format: "jwk" });
  return Buffer.from(x ?? "", "base64url");
}

function checkKeyName(name: string): void {
  if (!isValidKeyName(name)) {
    throw new CheckpointError("a key name must be non-empty, without spaces, plus signs or control characters");
  }
}

function checkRawKey(publicKeyRaw: Uint8Array): void {
  if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) {
    throw new CheckpointError("an Ed25519 public key is 32 bytes");
  }
}

/** Canonical padded standard base64 (RFC 4648 §4) only: what re-encodes to the same text. */
function decodeBase64(text: string): Buffer | undefined {
  if (text === "" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, "base64");
  return bytes.toString("base64") === text ? bytes : undefined;
}

/** Whether a string holds a character below U+0020 other than newline. */
function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 && code !== 0x0a) return true;
  }
  return false;
}
