// A request header's first value, as the reference reads it (Go's Header.Get).

import type { IncomingMessage } from 'node:http';

/** The first value of header `name` (lowercase), as the reference's Header.Get reads it, or
 * undefined when absent. Node's `req.headers` (built for every upgrade anyway, ws reads it) joins a
 * repeated header's values with ", " (and keeps the first of a repeated User-Agent), so only a value
 * with a comma is looked up again in the raw header lines; building `req.headersDistinct` for every
 * upgrade cost a second header object per connection. */
export function firstHeader(req: IncomingMessage, name: string): string | undefined {
  const joined = req.headers[name];
  if (typeof joined !== 'string' || !joined.includes(',')) return joined as string | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const field = raw[i]!;
    if (field.length === name.length && field.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}
