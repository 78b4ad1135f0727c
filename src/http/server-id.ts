// The server-id header's own rules, checked at the header gate
// (docs/protocol.md, "Request headers and what the relay does with each";
// docs/decisions.md, "The server-id must be valid UTF-8, at most 256 bytes").
//
// Node hands header values over as Latin-1 (one character per byte). The id is the registry key,
// is embedded in every phone's conn_id (so in every envelope to the binary) and is logged, so:
// - bytes that are not valid UTF-8 are refused rather than replaced by U+FFFD, which would merge
//   ids that differ only in those bytes into one key (the reference keeps raw bytes: two ids);
// - its length is bounded, so one header cannot make every envelope and log line tens of KiB.

import { isUtf8 } from 'node:buffer';

/** Longest accepted server-id, in bytes of its UTF-8 encoding (a UUID is 36). */
export const MAX_SERVER_ID_BYTES = 256;

/** The server-id as text, or null when the header's bytes must be refused (400). `raw` is the
 * header value as Node decoded it (Latin-1). */
export function decodeServerId(raw: string): string | null {
  if (raw.length > MAX_SERVER_ID_BYTES) return null;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the test is for any byte outside ASCII
  if (!/[^\u0000-\u007f]/.test(raw)) return raw;
  const bytes = Buffer.from(raw, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : null;
}
