/**
 * The W3C Trace Context `traceparent` header (Trace Context Level 1 §3.2 and
 * Level 2, which adds only a flag bit):
 *
 *   version "-" trace-id "-" parent-id "-" trace-flags
 *   2 lowercase hex, not "ff" / 32 lowercase hex, not all zeros /
 *   16 lowercase hex, not all zeros / 2 lowercase hex
 *
 * Version 00 is exactly those four fields (55 characters). A later version
 * may append fields: it is read by its first four, which must then be
 * followed by the end of the header or a "-" (§3.2.4, "Versioning of
 * traceparent"). Anything else is invalid and is ignored, as the spec says a
 * receiver must: no part of it is used.
 */
export interface Traceparent {
  readonly version: string;
  readonly traceId: string;
  readonly parentId: string;
  readonly flags: string;
}

const fields = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/s;

/** The header's fields, or undefined when it is absent or invalid (and so must be ignored). */
export function parseTraceparent(header: string | undefined): Traceparent | undefined {
  if (header === undefined) return undefined;
  const match = fields.exec(header);
  if (match === null) return undefined;
  const [, version = "", traceId = "", parentId = "", flags = "", rest] = match;
  if (version === "ff") return undefined;
  if (version === "00" && rest !== undefined) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined;
  return { version, traceId, parentId, flags };
}
