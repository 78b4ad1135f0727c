// The first value of a few named request headers, read from the raw header list in one pass.
//
// The header gate (upgrade.ts) needs the first value of up to five headers per upgrade. Node's
// `req.headersDistinct` gives the same values but builds an object holding an array for every
// header of the request first (about 1-2 % of the CPU of accepting a connection); this reads
// `req.rawHeaders`, the list that object is built from, and lowercases only names of a wanted
// length. Same values: Node fills headersDistinct[name][0] from the first raw line of that name.

/** `names` are lowercase (a name may repeat); the result has one entry per name, undefined when
 * absent. */
export function firstHeaderValues(rawHeaders: readonly string[], names: readonly string[]): (string | undefined)[] {
  const values = new Array<string | undefined>(names.length).fill(undefined);
  let missing = names.length;
  for (let i = 0; i + 1 < rawHeaders.length && missing > 0; i += 2) {
    const raw = rawHeaders[i]!;
    let lower: string | undefined;
    for (let n = 0; n < names.length; n++) {
      const name = names[n]!;
      if (values[n] !== undefined || raw.length !== name.length) continue;
      lower ??= raw.toLowerCase();
      if (lower !== name) continue;
      // No break: a name may be listed twice (the same header read for two purposes).
      values[n] = rawHeaders[i + 1]!;
      missing--;
    }
  }
  return values;
}
