import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { Point } from "@noble/ed25519";

/** A public key as the server holds it: parsed once, with its identity. */
export interface VerificationKey {
  readonly keyId: string;
  /** Hex SHA-256 of the SubjectPublicKeyInfo DER. */
  readonly fingerprint: string;
  readonly key: KeyObject;
  /** The raw 32-byte public key. */
  readonly raw: Uint8Array;
}

export class KeyError extends Error {
  override readonly name = "KeyError";
}

/** Key ids: what a ring names a key by, and what signatures carry. */
export const keyIdPattern = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * Parses a PEM SubjectPublicKeyInfo Ed25519 key and refuses keys no honest
 * signer has: small-order points (any signature "verifies" against them under
 * some verifiers) and non-canonical encodings.
 */
export function parsePublicKeyPem(pem: string, keyId?: string): VerificationKey {
  let key: KeyObject;
  try {
    key = createPublicKey(normalisePem(pem));
  } catch (error) {
    throw new KeyError(`not a readable PEM public key: ${(error as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new KeyError(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? "an unknown type"}`);
  }
  const der = key.export({ format: "der", type: "spki" });
  const raw = new Uint8Array(der.subarray(der.length - 32));
  let point: Point;
  try {
    point = Point.fromBytes(raw, false);
  } catch {
    throw new KeyError("the public key is not a canonical Ed25519 point");
  }
  if (point.isSmallOrder()) throw new KeyError("the public key is a small-order point");
  const fingerprint = createHash("sha256").update(der).digest("hex");
  const id = keyId ?? defaultKeyId(fingerprint);
  if (!keyIdPattern.test(id)) throw new KeyError(`key id "${id}" must be 1-64 characters of A-Z a-z 0-9 . _ : -`);
  return { keyId: id, fingerprint, key, raw };
}

/** The key id of a key that was given none: the first 16 hex digits of its fingerprint. */
export function defaultKeyId(fingerprint: string): string {
  return fingerprint.slice(0, 16);
}

/** The 32-byte seed of a PEM PKCS#8 Ed25519 private key. */
export function privateKeySeedFromPem(pem: string): Uint8Array {
  let key: KeyObject;
  try {
    key = createPrivateKey(normalisePem(pem));
  } catch (error) {
    throw new KeyError(`not a readable PEM private key: ${(error as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new KeyError("expected an Ed25519 private key");
  const jwk = key.export({ format: "jwk" });
  if (typeof jwk.d !== "string") throw new KeyError("the private key has no seed");
  return new Uint8Array(Buffer.from(jwk.d, "base64url"));
}

/** Environment variables often carry PEM with literal "\n" sequences; accept both forms. */
function normalisePem(pem: string): string {
  return pem.includes("\\n") ? pem.replaceAll("\\n", "\n") : pem;
}

/** The order of the Ed25519 group, L = 2^252 + 27742317777372353535851937790883648493. */
const groupOrder = (1n << 252n) + 27742317777372353535851937790883648493n;

/**
 * 64 bytes with a canonical S (S < L), as strict RFC 8032 requires: without
 * this check S + L would verify too, giving every signature a malleable twin.
 */
export function isStrictSignatureShape(signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(signature[i] ?? 0);
  return s < groupOrder;
}
