// What a queued frame keeps alive (issue #14.1). A frame routed from a binary is a zero-copy view
// of the message it arrived in, and ws may deliver several messages as views of one socket chunk:
// a 1-byte frame padded into a 200 KiB envelope pins all 200 KiB. Before a frame is queued it is
// copied out when its backing store is more than twice its size, and what is charged against the
// phone's budget is the backing store that stays alive, so a queue never keeps more memory than
// it is charged for (within a factor of two when two big frames share one chunk). A large frame
// written to its socket at once is the exception (mayWriteAsView): it may stay a view of up to 4x
// its size, because a window bounds how many are in flight: towards a phone it is charged for all
// of it, towards a binary the pause at 512 KiB / 64 frames bounds it
// (docs/decisions.md, "Large frames in flight stay views of the message they arrived in").

/** Copy a frame out when its backing store is larger than this many times the frame. */
export const RETAINED_COPY_RATIO = 2;

/** A frame handed to a socket in the same call (not queued) stays a view of its backing store up
 * to this many times its size instead of being copied: the socket's window bounds how many such
 * frames are in flight, and what one pins is charged (retainedBytes) or bounded by that window. */
export const IN_FLIGHT_VIEW_RATIO = 4;

/** Frames below this are handled as before (copied when they are a small part of their buffer):
 * the saving shrinks with the frame (bench/send-path.ts: 3.3 µs at 16 KiB, 1.1-1.5 µs at 4 KiB,
 * 0.5-0.9 µs at 1 KiB), while a view charges a small frame to its phone for a whole socket read
 * and leaves small envelopes' use of the allocation pool (which the pool-slab bounds were measured
 * with) as it was. */
export const IN_FLIGHT_VIEW_MIN_BYTES = 4096;

/** True when `frame`, about to be written at once, may be written as the view it is. */
export function mayWriteAsView(frame: Buffer): boolean {
  return frame.length >= IN_FLIGHT_VIEW_MIN_BYTES && frame.buffer.byteLength <= IN_FLIGHT_VIEW_RATIO * frame.length;
}

/** `frame`, or an unpooled copy of it when its backing store is mostly bytes it does not need.
 * Unpooled: a copy from Node's shared 8 KiB pool would pin a pool slab the same way. */
export function ownedFrame(frame: Buffer): Buffer {
  if (frame.buffer.byteLength <= RETAINED_COPY_RATIO * frame.length) return frame;
  const copy = Buffer.allocUnsafeSlow(frame.length);
  frame.copy(copy);
  return copy;
}

/** Bytes a queued frame keeps alive: its whole backing store (after ownedFrame, at most twice the
 * frame). */
export function retainedBytes(frame: Buffer | null): number {
  return frame === null ? 0 : frame.buffer.byteLength;
}
