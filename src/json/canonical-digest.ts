import { createHash } from "node:crypto";
import type { JsonValue } from "@bufbuild/protobuf";
import { canonicalJsonBytes } from "./canonical-json.js";

/** SHA-256 of the canonical bytes: the payload and result digest (docs/CANONICAL_JSON.md). */
export function canonicalJsonDigest(value: JsonValue): Buffer {
  return createHash("sha256").update(canonicalJsonBytes(value)).digest();
}
