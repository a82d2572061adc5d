/**
 * DSSE pre-authentication encoding (PAE), the exact bytes an envelope's
 * signature covers:
 *   "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
 * with LEN the byte length in ASCII decimal. Binding the payload type into the
 * signed bytes separates domains: an approval signature can never be replayed
 * as a receipt signature, or as a signature over anything else.
 * Portable: no Node-only imports (the approval signer runs in browsers too).
 */
export function preAuthEncoding(payloadType: string, payload: Uint8Array): Uint8Array {
  const encoder = new TextEncoder();
  const type = encoder.encode(payloadType);
  const header = encoder.encode(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `);
  const out = new Uint8Array(header.length + payload.length);
  out.set(header);
  out.set(payload, header.length);
  return out;
}
