// Messages a phone sent that the relay read after it held the phone back (its binary is backed
// up). Pausing a socket stops further reads, but ws still delivers every message left in the read
// it is parsing: up to 64 KiB, i.e. up to 9,362 two-byte frames per phone. Wrapped and queued
// towards the binary at once they cost ~380 B each (15 phones: 140,430 envelopes, +53 MiB, while
// the binary's queue was supposed to stop at 64 frames). Here they wait as their bytes in one
// buffer plus one number each, and go out in order when the phone is let go.

/** Bytes reserved when the first message is held (grown by doubling). */
const FIRST_CAPACITY_BYTES = 4 * 1024;

export class HeldMessages {
  private bytes: Buffer;
  /** Bytes stored so far. */
  private used = 0;
  /** Per message: its length * 2, plus 1 for a binary-opcode message. */
  private readonly entries: number[] = [];
  /** The next message to hand out, and where its bytes start. */
  private next = 0;
  private nextOffset = 0;

  constructor(first: Buffer, isBinary: boolean) {
    this.bytes = Buffer.allocUnsafe(Math.max(FIRST_CAPACITY_BYTES, first.length));
    this.push(first, isBinary);
  }

  /** Messages not handed out yet. */
  get size(): number {
    return this.entries.length - this.next;
  }

  push(data: Buffer, isBinary: boolean): void {
    if (this.used + data.length > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + data.length));
      this.bytes.copy(grown, 0, 0, this.used);
      this.bytes = grown;
    }
    data.copy(this.bytes, this.used);
    this.used += data.length;
    this.entries.push(data.length * 2 + (isBinary ? 1 : 0));
  }

  /** Hands out the oldest message to `use` (its bytes are a view of this store, never reused). */
  shift(use: (data: Buffer, isBinary: boolean) => void): void {
    const entry = this.entries[this.next++]!;
    const length = entry >>> 1;
    const start = this.nextOffset;
    this.nextOffset += length;
    use(this.bytes.subarray(start, start + length), (entry & 1) === 1);
  }
}
