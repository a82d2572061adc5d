// Checkpoints and signed notes (docs/TRANSPARENCY_LOG.md): C2SP
// tlog-checkpoint bodies in C2SP signed notes with Ed25519 signatures, checked
// against the reference vector of golang.org/x/mod/sumdb/note and against
// tampering and malformed notes.

import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { describe, it } from "node:test";
import {
  CheckpointError,
  formatCheckpointBody,
  keyHash,
  type NoteSigner,
  type NoteVerifier,
  parseCheckpointBody,
  parseSignedCheckpoint,
  parseSignedNote,
  parseVerifierKey,
  signCheckpoint,
  signNote,
  verifierKey,
  verifyNote,
  verifySignedCheckpoint,
} from "../src/tlog/checkpoint.js";
import { leafHash, rootFromLeafHashes } from "../src/tlog/merkle-tree.js";

interface KeyPair {
  readonly signer: NoteSigner;
  readonly verifier: NoteVerifier;
}

function rawOf(publicKey: KeyObject): Buffer {
  return Buffer.from(publicKey.export({ format: "jwk" }).x ?? "", "base64url");
}

function keyPair(name: string): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const publicKeyRaw = rawOf(publicKey);
  return { signer: { name, privateKey, publicKeyRaw }, verifier: { name, publicKey, publicKeyRaw } };
}

const origin = "openexec.example/log";
const log = keyPair(origin);
const other = keyPair(origin);
const rootHash = rootFromLeafHashes(["a", "b", "c", "d", "e", "f", "g"].map((e) => leafHash(Buffer.from(e))));
const body = formatCheckpointBody({ origin, size: 7, rootHash });
const note = signCheckpoint(body, log.signer);

/** The base64 signature of a note's only signature line. */
function signatureOf(signed: string): string {
  const line = signed.split("\n").at(-2) ?? "";
  return line.slice(line.lastIndexOf(" ") + 1);
}

/** A signature line over `text` by `signer`, with an optionally forged name or key ID. */
function signatureLine(text: string, signer: NoteSigner, forged: { name?: string; id?: Buffer } = {}): string {
  const id = forged.id ?? keyHash(signer.name, signer.publicKeyRaw);
  const signature = sign(null, Buffer.from(text), signer.privateKey);
  return `\u2014 ${forged.name ?? signer.name} ${Buffer.concat([id, signature]).toString("base64")}\n`;
}

describe("checkpoint notes", () => {
  it("have the C2SP layout", () => {
    assert.equal(body, `${origin}\n7\n${rootHash.toString("base64")}\n`);
    assert.ok(note.startsWith(`${body}\n\u2014 ${origin} `));
    assert.ok(note.endsWith("\n"));
    const signature = Buffer.from(signatureOf(note), "base64");
    assert.equal(signature.length, 4 + 64);
    assert.deepEqual(signature.subarray(0, 4), keyHash(origin, log.signer.publicKeyRaw));
  });

  it("round-trip through signing and verification", () => {
    assert.deepEqual(verifySignedCheckpoint(note, log.verifier), { origin, size: 7, rootHash });
    assert.deepEqual(verifySignedCheckpoint(note, log.verifier, origin), { origin, size: 7, rootHash });
    assert.equal(verifySignedCheckpoint(note, log.verifier, "openexec.example/other"), undefined);
    const parsed = parseSignedCheckpoint(note);
    assert.ok(typeof parsed !== "string");
    assert.equal(parsed.origin, origin);
    assert.equal(parsed.size, 7);
    assert.deepEqual(parsed.rootHash, rootHash);
    assert.equal(parsed.signatures.length, 1);
    assert.equal(parsed.signatures[0]?.name, origin);
    assert.deepEqual(parsed.signatures[0]?.keyHash, keyHash(origin, log.signer.publicKeyRaw));
    for (const size of [0, 1, Number.MAX_SAFE_INTEGER]) {
      const signed = signCheckpoint(formatCheckpointBody({ origin, size, rootHash }), log.signer);
      assert.equal(verifySignedCheckpoint(signed, log.verifier)?.size, size);
    }
  });

  it("fail when the size, root, origin or signature is altered", () => {
    const otherRoot = Buffer.from(rootHash);
    otherRoot[0] = (otherRoot[0] as number) ^ 1;
    const tampered = [
      note.replace("\n7\n", "\n8\n"),
      note.replace(rootHash.toString("base64"), otherRoot.toString("base64")),
      note.replace(`${origin}\n`, "openexec.example/loh\n"),
    ];
    const signature = Buffer.from(signatureOf(note), "base64");
    for (const i of [0, 4, 35, 67]) {
      const bad = Buffer.from(signature);
      bad[i] = (bad[i] as number) ^ 0x40;
      tampered.push(note.replace(signatureOf(note), bad.toString("base64")));
    }
    for (const bad of tampered) {
      assert.notEqual(bad, note);
      assert.equal(verifySignedCheckpoint(bad, log.verifier), undefined, bad);
    }
  });

  it("fail for signatures by other keys", () => {
    // Same name, other key: another key ID, so the line is not ours and is ignored.
    const byOther = signCheckpoint(body, other.signer);
    assert.equal(verifySignedCheckpoint(byOther, log.verifier), undefined);
    assert.deepEqual(verifySignedCheckpoint(byOther, other.verifier)?.rootHash, rootHash);
    // Another key claiming our name and key ID: verified, and refused.
    const forged = `${body}\n${signatureLine(body, other.signer, { id: keyHash(origin, log.signer.publicKeyRaw) })}`;
    assert.equal(verifySignedCheckpoint(forged, log.verifier), undefined);
    // Our key under another name: another key ID and name, ignored.
    const renamed = keyPair("openexec.example/renamed");
    const asRenamed = `${body}\n${signatureLine(body, { ...renamed.signer, privateKey: log.signer.privateKey })}`;
    assert.equal(verifySignedCheckpoint(asRenamed, log.verifier), undefined);
  });

  it("ignore lines from unknown keys but refuse a bad line from the trusted key", () => {
    const witness = keyPair("witness.example/w1");
    const cosigned = `${note}${signatureLine(body, witness.signer)}`;
    assert.deepEqual(verifySignedCheckpoint(cosigned, log.verifier)?.size, 7);
    assert.deepEqual(verifySignedCheckpoint(cosigned, witness.verifier)?.size, 7);
    const unknownFirst = `${body}\n${signatureLine(body, witness.signer)}${note.slice(body.length + 1)}`;
    assert.deepEqual(verifySignedCheckpoint(unknownFirst, log.verifier)?.size, 7);
    const badSecond = `${note}${signatureLine("something else\n", log.signer)}`;
    assert.equal(verifySignedCheckpoint(badSecond, log.verifier), undefined);
    assert.equal(verifySignedCheckpoint(`${note}${note.slice(body.length + 1)}`, log.verifier)?.size, 7);
  });

  it("refuse misconfigured keys", () => {
    assert.throws(() => verifySignedCheckpoint(note, { ...log.verifier, publicKeyRaw: other.verifier.publicKeyRaw }));
    assert.throws(() => verifySignedCheckpoint(note, { ...log.verifier, name: "bad name" }), CheckpointError);
    assert.throws(() => signCheckpoint(body, { ...log.signer, publicKeyRaw: other.signer.publicKeyRaw }));
    assert.throws(() => signCheckpoint(body, { ...log.signer, name: "a+b" }), CheckpointError);
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    assert.throws(() => signCheckpoint(body, { ...log.signer, privateKey }), CheckpointError);
  });
});

describe("key IDs and verifier keys", () => {
  it("follow SHA-256(name || 0x0A || 0x01 || public key)[:4]", () => {
    const raw = log.signer.publicKeyRaw;
    const expected = createHash("sha256")
      .update(Buffer.concat([Buffer.from(`${origin}\n`), Buffer.of(0x01), raw]))
      .digest()
      .subarray(0, 4);
    assert.deepEqual(keyHash(origin, raw), expected);
    const vkey = verifierKey(origin, raw);
    assert.equal(
      vkey,
      `${origin}+${expected.toString("hex")}+${Buffer.concat([Buffer.of(1), raw]).toString("base64")}`,
    );
    assert.deepEqual(parseVerifierKey(vkey), { name: origin, keyHash: expected, publicKeyRaw: Buffer.from(raw) });
  });

  it("refuse malformed verifier keys", () => {
    // The worked example's key (docs/TRANSPARENCY_LOG.md): a "+" inside its base64, letters in its key ID.
    const [name, id, key] = ["openexec.example/log", "f0cd7b9b", "AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"];
    const good = parseVerifierKey(`${name}+${id}+${key}`);
    assert.ok(typeof good !== "string");
    assert.equal(good.publicKeyRaw.toString("hex"), "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
    for (const bad of [
      `${name}+${id}`,
      `${name}+${id.toUpperCase()}+${key}`,
      `${name}+${id}0+${key}`,
      `${name}+f0cd7b9c+${key}`,
      `${name}x+${id}+${key}`,
      `+${id}+${key}`,
      `${name} +${id}+${key}`,
      `${name}+${id}+${key.slice(0, -4)}`,
      `${name}+${id}+${key.slice(0, -1)}`,
      `${name}+${id}+${key.replace("A", "B")}`, // signature type 0x05
      `${name}+${id}+${key}=`,
    ]) {
      assert.equal(typeof parseVerifierKey(bad), "string", bad);
    }
  });

  it("reproduce the golang.org/x/mod/sumdb/note reference note byte for byte", () => {
    // From note_test.go: the PeterNeumann key pair and its signed note.
    const vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const text =
      "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const signed = `${text}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

    const parsedKey = parseVerifierKey(vkey);
    assert.ok(typeof parsedKey !== "string");
    assert.equal(parsedKey.keyHash.toString("hex"), "c74f20a3");
    assert.equal(verifierKey("PeterNeumann", parsedKey.publicKeyRaw), vkey);
    const seed = Buffer.from(skey.split("+").slice(4).join("+"), "base64").subarray(1);
    const privateKey = createPrivateKey({
      key: {
        kty: "OKP",
        crv: "Ed25519",
        d: seed.toString("base64url"),
        x: parsedKey.publicKeyRaw.toString("base64url"),
      },
      format: "jwk",
    });
    const publicKey = createPublicKey(privateKey);
    const signer = { name: "PeterNeumann", privateKey, publicKeyRaw: parsedKey.publicKeyRaw };
    const verifier = { name: "PeterNeumann", publicKey, publicKeyRaw: parsedKey.publicKeyRaw };
    assert.equal(signNote(text, signer), signed);
    assert.equal(verifyNote(signed, verifier), text);
    assert.equal(verifyNote(signed.replace("cryptography", "cryptographY"), verifier), undefined);
  });
});

describe("the worked example of docs/TRANSPARENCY_LOG.md", () => {
  it("is reproduced byte for byte", () => {
    const seed = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const pkcs8Prefix = Buffer.from("302e020100300506032b657004220420", "hex");
    const privateKey = createPrivateKey({ key: Buffer.concat([pkcs8Prefix, seed]), format: "der", type: "pkcs8" });
    const publicKey = createPublicKey(privateKey);
    const publicKeyRaw = rawOf(publicKey);
    const name = "openexec.example/log";
    assert.equal(publicKeyRaw.toString("hex"), "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
    assert.equal(keyHash(name, publicKeyRaw).toString("hex"), "f0cd7b9b");
    assert.equal(
      verifierKey(name, publicKeyRaw),
      "openexec.example/log+f0cd7b9b+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
    );
    const entries = Array.from({ length: 10 }, (_, i) => leafHash(Buffer.from(`leaf-${i}`)));
    const exampleRoot = rootFromLeafHashes(entries);
    assert.equal(exampleRoot.toString("hex"), "b45918633ee931a29d24197409547081c315d26ecb3fb0417b8941f859b8e07e");
    const exampleBody = formatCheckpointBody({ origin: name, size: 10, rootHash: exampleRoot });
    assert.equal(Buffer.byteLength(exampleBody), 69);
    const expected =
      "openexec.example/log\n10\ntFkYYz7pMaKdJBl0CVRwgcMV0m7LP7BBe4lB+Fm44H4=\n\n" +
      "\u2014 openexec.example/log 8M17m+yUnnP+ql13xVzuII7io/zDygEu2cmGG7uHGDDrjq9rqraciiwQvG0vUrG/fwyQy6pq4pfX2+yapgGtg4L6xgc=\n";
    assert.equal(signCheckpoint(exampleBody, { name, privateKey, publicKeyRaw }), expected);
    assert.deepEqual(verifySignedCheckpoint(expected, { name, publicKey, publicKeyRaw }, name), {
      origin: name,
      size: 10,
      rootHash: exampleRoot,
    });
  });
});

describe("strict parsing", () => {
  /** Signs any text with the log key, so only the format can make it fail. */
  const signed = (text: string): string => `${text}\n${signatureLine(text, log.signer)}`;
  const root64 = rootHash.toString("base64");
  /** The root in base64 with non-zero unused bits in its last character (43 characters carry 258 bits). */
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const nonCanonical = `${root64.slice(0, 42)}${alphabet[alphabet.indexOf(root64[42] as string) + 1]}=`;

  it("accepts exactly the checkpoint form", () => {
    assert.deepEqual(verifySignedCheckpoint(signed(body), log.verifier)?.size, 7);
    assert.equal(signed(body), note);
  });

  it("refuses malformed bodies even when they are validly signed", () => {
    const bodies = [
      `${origin}\n007\n${root64}\n`, // leading zeros
      `${origin}\n00\n${root64}\n`,
      `${origin}\n+7\n${root64}\n`,
      `${origin}\n-1\n${root64}\n`,
      `${origin}\n7.0\n${root64}\n`,
      `${origin}\n1e3\n${root64}\n`,
      `${origin}\n 7\n${root64}\n`,
      `${origin}\n\n${root64}\n`,
      `${origin}\n9007199254740992\n${root64}\n`, // 2^53: beyond exact sizes
      `${origin}\n7\n${root64.slice(0, -1)}\n`, // no padding
      `${origin}\n7\n${nonCanonical}\n`, // non-zero trailing bits
      `${origin}\n7\n${rootHash.toString("base64url")}=\n`,
      `${origin}\n7\n${rootHash.subarray(1).toString("base64")}\n`, // 31 bytes
      `${origin}\n7\n${Buffer.concat([rootHash, Buffer.of(0)]).toString("base64")}\n`, // 33 bytes
      `${origin}\n7\n${rootHash.toString("hex")}\n`,
      `${origin}\n7\n${root64}\nextension\n`, // extension lines: OpenExec writes none
      `${origin}\n7\n`,
      `\n7\n${root64}\n`, // empty origin
      `${origin}\n7\n${root64} \n`,
    ];
    for (const text of bodies) {
      assert.equal(verifySignedCheckpoint(signed(text), log.verifier), undefined, JSON.stringify(text));
      assert.equal(typeof parseSignedCheckpoint(signed(text)), "string", JSON.stringify(text));
      assert.throws(() => signCheckpoint(text, log.signer), CheckpointError, JSON.stringify(text));
    }
    // Lenient decoders read the non-canonical root as the same 32 bytes.
    assert.deepEqual(Buffer.from(nonCanonical, "base64"), rootHash);
    assert.equal(parseCheckpointBody(`${origin}\n7\n${nonCanonical}\n`), "the root hash must be base64 of 32 bytes");
  });

  it("refuses malformed notes", () => {
    const line = note.slice(body.length + 1);
    const notes = [
      `${body}${line}`, // no blank line
      `${body}\n\n${line}`, // two blank lines: the text would end in an empty line
      `${body}\n${line.slice(0, -1)}`, // no final newline
      `${body}\n`, // no signatures
      `${body}\n\n`,
      `${body}\n${line.replace("\u2014", "-")}`, // hyphen, not em dash
      `${body}\n${line.replace("\u2014", "\u2013")}`, // en dash
      `${body}\n${line.replace("\u2014 ", "\u2014")}`,
      `${body}\n${line.replace(` ${signatureOf(note)}`, `  ${signatureOf(note)}`)}`, // two spaces
      `${body}\n${line.replace(signatureOf(note), signatureOf(note).slice(0, -1))}`, // bad base64
      `${body}\n${line.replace(signatureOf(note), `${signatureOf(note).slice(0, -2)}-=`)}`, // base64url, not base64
      `${body}\n${line.replace(signatureOf(note), Buffer.alloc(4).toString("base64"))}`, // key ID only
      `${body}\n${line.replace(signatureOf(note), Buffer.alloc(67).toString("base64"))}`, // short Ed25519 signature
      `${body}\n${line}\n`, // trailing blank line
      `${body.replaceAll("\n", "\r\n")}\n${line}`, // CRLF
      `${body.replace("\n7\n", "\n7\t\n")}\n${line}`, // control character
      `${body}\n${line}${"\u2014 x AAAAAAA=\n".repeat(100)}`, // over 100 signatures
      `${body}\n${line.replace(origin, "")}`, // empty key name
    ];
    for (const bad of notes) {
      assert.equal(verifySignedCheckpoint(bad, log.verifier), undefined, JSON.stringify(bad));
    }
    assert.equal(typeof parseSignedNote(`${body}${line}`), "string");
    assert.equal(typeof parseSignedNote(`${body}\n${line}${"\u2014 x AAAAAAA=\n".repeat(99)}`), "object");
    assert.equal(typeof parseSignedNote(`${body}\n${line}${"\u2014 x AAAAAAA=\n".repeat(100)}`), "string");
    assert.equal(typeof parseSignedNote(`text\ud800\n\n${line}`), "string"); // lone surrogate
  });

  it("refuses bad checkpoints at formatting", () => {
    for (const checkpoint of [
      { origin: "", size: 1, rootHash },
      { origin: "has space", size: 1, rootHash },
      { origin: "has+plus", size: 1, rootHash },
      { origin: "line\nbreak", size: 1, rootHash },
      { origin, size: -1, rootHash },
      { origin, size: 1.5, rootHash },
      { origin, size: 2 ** 53, rootHash },
      { origin, size: 1, rootHash: rootHash.subarray(1) },
    ]) {
      assert.throws(() => formatCheckpointBody(checkpoint), CheckpointError, JSON.stringify(checkpoint));
    }
    assert.throws(() => signNote("no newline", log.signer), CheckpointError);
    assert.throws(() => signNote("", log.signer), CheckpointError);
    assert.throws(() => signNote("tab\there\n", log.signer), CheckpointError);
  });
});
