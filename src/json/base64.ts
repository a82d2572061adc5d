/**
 * Base64 as protobuf JSON writes bytes: the standard or the URL-safe alphabet
 * (not both), with or without padding. Decoders usually ignore the low bits of
 * the last character, so "QR==" and "QQ==" both decode to "A": here only the
 * one spelling of each byte string in its alphabet and padding style is
 * accepted (RFC 4648 section 3.5, padding bits must be zero). Anything else
 * gives undefined.
 */
export function decodeCanonicalBase64(text: string): Uint8Array | undefined {
  if (!base64Pattern.test(text)) return undefined;
  const urlSafe = /[-_]/.test(text);
  if (urlSafe && /[+/]/.test(text)) return undefined;
  const bytes = Buffer.from(text, urlSafe ? "base64url" : "base64");
  let again = bytes.toString("base64");
  if (urlSafe) again = again.replaceAll("+", "-").replaceAll("/", "_");
  if (!text.endsWith("=")) again = again.replace(/=+$/, "");
  return again === text ? new Uint8Array(bytes) : undefined;
}

const base64Pattern = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/;
