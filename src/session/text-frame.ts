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
 * to the kernel (or the write failed), as ws's send callback does. The frame header shares one
 * small allocation with `head`; `body` and `tail` are written as they are and must not change
 * until then. */
export function writeTextFrame(
  socket: Socket,
  head: Buffer,
  body: Buffer,
  tail: Buffer,
  done: (err?: Error) => void,
): void {
  const length = head.length + body.length + tail.length;
  const headerBytes = length <= MAX_SHORT_LENGTH ? 2 : length <= 0xffff ? 4 : 10;
  const first = Buffer.allocUnsafe(headerBytes + head.length);
  first[0] = FIN_TEXT;
  if (headerBytes === 2) {
    first[1] = length;
  } else if (headerBytes === 4) {
    first[1] = LENGTH_16;
    first.writeUInt16BE(length, 2);
  } else {
    first[1] = LENGTH_64;
    first.writeUInt32BE(0, 2);
    first.writeUInt32BE(length, 6); // messages are far below 4 GiB
  }
  head.copy(first, headerBytes);
  socket.cork();
  socket.write(first);
  socket.write(body);
  // Node passes null or undefined for success; callers take a missing error either way.
  socket.write(tail, done as (err?: Error | null) => void);
  socket.uncork();
}
