import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { KeyError, parsePublicKeyPem, type VerificationKey } from "../signing/ed25519-keys.js";
import type { NoteSigner } from "../tlog/checkpoint.js";

/** The executor's own Ed25519 key, with which it signs every receipt. */
export interface ReceiptKey {
  readonly public: VerificationKey;
  readonly publicPem: string;
  /** The private key as PEM PKCS#8, for the ledger's writer thread, which signs receipts. Never logged. */
  readonly privatePem: string;
  sign(message: Uint8Array): Uint8Array;
  /** The same key as a signed-note signer for checkpoints, under `name` (the log origin). */
  noteSigner(name: string): NoteSigner;
}

/**
 * OPENEXEC_RECEIPT_KEY (a PEM PKCS#8 private key) when set; otherwise the key
 * stored beside the ledger (`<db>.receipt-key.pem`, mode 0600), created on
 * first start. Its key id is the first 16 hex digits of its fingerprint.
 */
export function loadReceiptKey(pem: string | undefined, keyPath: string): ReceiptKey {
  let privateKey: KeyObject;
  if (pem !== undefined) {
    privateKey = parsePrivateKey(pem.includes("\\n") ? pem.replaceAll("\\n", "\n") : pem, "OPENEXEC_RECEIPT_KEY");
  } else if (existsSync(keyPath)) {
    if ((statSync(keyPath).mode & 0o077) !== 0) {
      throw new KeyError(`${keyPath} is readable by others; chmod 600 it`);
    }
    privateKey = parsePrivateKey(readFileSync(keyPath, "utf8"), keyPath);
  } else {
    privateKey = generateKeyPairSync("ed25519").privateKey;
    mkdirSync(dirname(keyPath), { recursive: true });
    writeFileSync(keyPath, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600, flag: "wx" });
  }
  const publicPem = createPublicKey(privateKey).export({ format: "pem", type: "spki" }).toString();
  return {
    public: parsePublicKeyPem(publicPem),
    publicPem,
    privatePem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    sign: (message) => new Uint8Array(sign(null, message, privateKey)),
    noteSigner: (name) => ({ name, privateKey, publicKeyRaw: parsePublicKeyPem(publicPem).raw }),
  };
}

function parsePrivateKey(pem: string, source: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    throw new KeyError(`${source} is not a readable PEM private key: ${(error as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new KeyError(`${source} must be an Ed25519 key`);
  return key;
}
