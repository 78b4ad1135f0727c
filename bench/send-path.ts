// Micro-benchmark of what the relay does per 16 KiB frame on the send side, over a real loopback
// socket (docs/performance.md, "Where the targets stand"): the old and new ways of sending a
// phone's envelope to a binary and a binary's frame to a phone, interleaved, CPU time per frame
// (process.cpuUsage, user + system, so the kernel's share of each write counts too). The receiving
// end is a raw socket that discards what it reads; it runs in this process too and costs the same
// in every variant.
//
// Usage: npx tsc -p . && node --expose-gc dist/bench/send-path.js [frames per round] [frame bytes]

import { connect, type Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { connIdPrefix, ENVELOPE_SUFFIX, joinEnvelope, phoneEnvelope } from '../src/protocol/envelope.js';
import { ownedFrame } from '../src/session/retained.js';
import { writeTextFrame } from '../src/session/text-frame.js';

const FRAMES = Number(process.argv[2] ?? 40_000);
const FRAME_BYTES = Number(process.argv[3] ?? 16 * 1024);
/** Frames per socket read the relay gets them in (a 64 KiB read holds about four). */
const PER_CHUNK = 4;
const ROUNDS = 7;

const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
const port = (wss.address() as { port: number }).port;
const serverSide = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
const sink = connect({ host: '127.0.0.1', port });
await new Promise<void>((resolve) => sink.once('connect', () => resolve()));
sink.write(
  'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
);
sink.on('data', () => {});
const ws = await serverSide;
const socket = (ws as unknown as { _socket: Socket })._socket;

const prefix = connIdPrefix('client-bench-0123456789abcdef-1a2b3c4d');
/** A socket read with PER_CHUNK compact 16 KiB frames in it; the frames are views of it. */
function chunkOfFrames(): Buffer[] {
  const chunk = Buffer.allocUnsafeSlow(PER_CHUNK * (FRAME_BYTES + 8));
  const frames: Buffer[] = [];
  for (let k = 0; k < PER_CHUNK; k++) {
    const at = k * (FRAME_BYTES + 8) + 8;
    chunk.write(`{"s":${k},"p":"`, at, 'latin1');
    chunk.fill(0x78, at + 12, at + FRAME_BYTES - 2);
    chunk.write('"}', at + FRAME_BYTES - 2, 'latin1');
    frames.push(chunk.subarray(at, at + FRAME_BYTES));
  }
  return frames;
}
const frames = chunkOfFrames();

type Send = (frame: Buffer, done: () => void) => void;
const variants: Record<string, Send> = {
  'p2b before: scan + envelope copied, ws.send': (frame, done) => {
    if (phoneEnvelope(prefix, frame, false) === null) throw new Error('invalid');
    ws.send(joinEnvelope(prefix, frame), { binary: false }, done);
  },
  'p2b after: scan + prefix | frame | } in one frame': (frame, done) => {
    if (phoneEnvelope(prefix, frame, false) === null) throw new Error('invalid');
    writeTextFrame(socket, prefix, frame, ENVELOPE_SUFFIX, done);
  },
  'b2p before: frame copied out of its read, ws.send': (frame, done) => {
    ws.send(ownedFrame(frame), { binary: false }, done);
  },
  'b2p after: frame sent as the view it is': (frame, done) => {
    ws.send(frame, { binary: false }, done);
  },
};

/** Sends `count` frames, PER_CHUNK per tick inside one cork (as the relay does per read), and
 * waits for every write callback; returns CPU µs per frame. */
async function run(send: Send, count: number): Promise<number> {
  let pending = 0;
  let resolveDone: () => void = () => {};
  const done = (): void => {
    if (--pending === 0) resolveDone();
  };
  const start = process.cpuUsage();
  for (let sent = 0; sent < count; sent += PER_CHUNK) {
    socket.cork();
    for (const frame of frames) {
      pending++;
      send(frame, done);
    }
    socket.uncork();
    if (socket.writableLength > 256 * 1024) {
      await new Promise<void>((resolve) => {
        resolveDone = resolve;
        if (pending === 0) resolve();
      });
    }
  }
  if (pending > 0) await new Promise<void>((resolve) => (resolveDone = resolve));
  const used = process.cpuUsage(start);
  return (used.user + used.system) / count;
}

const results = new Map<string, number[]>();
for (const send of Object.values(variants)) await run(send, FRAMES / 4); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, send] of Object.entries(variants)) {
    results.set(name, [...(results.get(name) ?? []), await run(send, FRAMES)]);
  }
}
process.stdout.write(
  `CPU µs per ${FRAME_BYTES}-byte frame (user + system), median of ${ROUNDS} interleaved rounds of ${FRAMES}\n`,
);
for (const [name, values] of results) {
  const sorted = [...values].sort((a, b) => a - b);
  process.stdout.write(
    `${name.padEnd(52)} ${sorted[ROUNDS >> 1]!.toFixed(2)}  (${sorted.map((v) => v.toFixed(1)).join(' ')})\n`,
  );
}
ws.terminate();
sink.destroy();
wss.close();
