// One unfragmented WebSocket text frame whose payload is three buffers, written to the socket
// without joining them (docs/performance.md, "Where the targets stand"). A phone's envelope is
// `{"conn_id":…,"frame":` + the phone's bytes as received + `}`; ws's Sender takes one buffer per
// frame, so sending it through ws means a fresh copy of every large frame. The bytes on the wire
// are exactly the frame ws would write (RFC 6455 section 5.2: FIN, text opcode, no mask from a
// server, the shortest length encoding): only the copy is gone.
//
// The caller must hold what ws's own send requires: the connection is OPEN and ws's Sender has
// nothing queued (sendsDirectly), so these bytes cannot overtake a frame ws is still holding back.

import type { Socket } from 'node:net';
import type WebSocket from 'ws';

/** FIN + opcode 1 (text). */
const FIN_TEXT = 0x81;
/** Payload lengths up to this fit in the 7-bit length field. */
const MAX_SHORT_LENGTH = 125;
/** Length field values announcing a 16-bit and a 64-bit extended length. */
const LENGTH_16 = 126;
const LENGTH_64 = 127;

/** ws's Sender state: DEFAULT (0) means it is not holding frames back (compressing, reading a
 * Blob), so a frame written to the socket now goes out after everything ws wrote before. */
interface WsSenderState {
  _state: number;
}

/** True when a frame written straight to `ws`'s socket keeps its place in the send order. */
export function sendsDirectly(ws: WebSocket): boolean {
  return (ws as unknown as { _sender: WsSenderState })._sender._state === 0;
}

/** Writes one text frame carrying head + body + tail; `done` runs when the last byte was handed
 * to the kernel (or the write failed), as ws's send callback does. With `copyBody` the whole
 * frame is one new buffer (a small frame, or one that must not keep the buffer it is a view of
 * alive): one allocation and one write, where joining the envelope and sending it through ws took
 * two of each. Without it the frame header shares one small allocation with `head`, and `body`
 * and `tail` are written as they are and must not change until `done`. */
export function writeTextFrame(
  socket: Socket,
  head: Buffer,
  body: Buffer,
  tail: Buffer,
  done: (err?: Error) => void,
  copyBody = false,
): void {
  const length = head.length + body.length + tail.length;
  const headerBytes = length <= MAX_SHORT_LENGTH ? 2 : length <= 0xffff ? 4 : 10;
  if (copyBody) {
    const frame = Buffer.allocUnsafe(headerBytes + length);
    writeHeader(frame, length, headerBytes);
    head.copy(frame, headerBytes);
    body.copy(frame, headerBytes + head.length);
    tail.copy(frame, headerBytes + head.length + body.length);
    // Node passes null or undefined for success; callers take a missing error either way.
    socket.write(frame, done as (err?: Error | null) => void);
    return;
  }
  const first = Buffer.allocUnsafe(headerBytes + head.length);
  writeHeader(first, length, headerBytes);
  head.copy(first, headerBytes);
  socket.cork();
  socket.write(first);
  socket.write(body);
  // Node passes null or undefined for success; callers take a missing error either way.
  socket.write(tail, done as (err?: Error | null) => void);
  socket.uncork();
}

/** FIN + text opcode and the shortest encoding of `length` (RFC 6455 section 5.2), no mask. */
function writeHeader(frame: Buffer, length: number, headerBytes: number): void {
  frame[0] = FIN_TEXT;
  if (headerBytes === 2) {
    frame[1] = length;
  } else if (headerBytes === 4) {
    frame[1] = LENGTH_16;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = LENGTH_64;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6); // messages are far below 4 GiB
  }
}
