// Raw WebSocket on the wire for tests: building (masked) client frames, parsing the server's
// frames and close frames, and a WebSocket client on a bare TCP socket that completes the upgrade
// and then does exactly what the test tells it (never answers pings, stops reading, sends half a
// frame). The ws library refuses to misbehave; the relay must still cope when a peer does.

import { connect as netConnect, type Socket } from 'node:net';
import type WebSocket from 'ws';
import { headerLines, UPGRADE_HEADERS } from './http.js';
import { waitFor, withTimeout } from './wait.js';

export interface WireFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** Server frames (unmasked) fully contained in `data`, in order. */
export function parseServerFrames(data: Buffer): WireFrame[] {
  const frames: WireFrame[] = [];
  let i = 0;
  while (i + 2 <= data.length) {
    const fin = (data[i]! & 0x80) !== 0;
    const opcode = data[i]! & 0x0f;
    let len = data[i + 1]! & 0x7f;
    let off = i + 2;
    if (len === 126) {
      if (off + 2 > data.length) break;
      len = data.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      if (off + 8 > data.length) break;
      len = Number(data.readBigUInt64BE(off));
      off += 8;
    }
    if (off + len > data.length) break;
    frames.push({ fin, opcode, payload: data.subarray(off, off + len) });
    i = off + len;
  }
  return frames;
}

export function closeOf(frame: WireFrame | undefined): { code: number; reason: string } | undefined {
  if (frame === undefined || frame.opcode !== 0x8) return undefined;
  const p = frame.payload;
  return { code: p.length >= 2 ? p.readUInt16BE(0) : 1005, reason: p.subarray(2).toString('utf8') };
}

/** The first complete close frame among the server frames in `data`. */
export function closeFrameIn(data: Buffer): { code: number; reason: string } | undefined {
  return closeOf(parseServerFrames(data).find((f) => f.opcode === 0x8));
}

/** A masked client frame. `announced` overrides the length field (to announce more than is sent). */
export function clientFrame(
  opcode: number,
  payload: Buffer,
  options: { fin?: boolean; announced?: number; mask?: boolean; rsv?: number } = {},
): Buffer {
  const fin = options.fin ?? true;
  const masked = options.mask ?? true;
  const len = options.announced ?? payload.length;
  const head: number[] = [(fin ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode];
  const maskBit = masked ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (len < 126) head.push(maskBit | len);
  else if (len < 65536) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(len));
  }
  if (!masked) return Buffer.concat([Buffer.from(head), ext, payload]);
  const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

export function closePayload(code: number, reason = ''): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code);
  b.write(reason, 2);
  return b;
}

/** A WebSocket client on a raw TCP socket: it completes the upgrade and then does exactly what the
 * test tells it (never answers pings, never reads, sends partial frames...). */
export class RawWs {
  /** Bytes received after the 101 response. */
  private buf = Buffer.alloc(0);
  private ended = false;
  endedAt = 0;

  private constructor(readonly socket: Socket) {}

  static async open(
    port: number,
    path: string,
    headers: Record<string, string>,
    options: { localAddress?: string; timeoutMs?: number; allowHalfOpen?: boolean } = {},
  ): Promise<RawWs> {
    // allowHalfOpen: the relay's FIN does not end our side (coder/websocket keeps TCP open until
    // the application closes the connection).
    const socket = netConnect({
      host: '127.0.0.1',
      port,
      localAddress: options.localAddress,
      allowHalfOpen: options.allowHalfOpen,
    });
    const raw = new RawWs(socket);
    let head = Buffer.alloc(0);
    let status = '';
    socket.on('error', () => {});
    socket.on('close', () => {
      raw.ended = true;
      raw.endedAt = Date.now();
    });
    socket.on('data', (chunk: Buffer) => {
      if (status !== '') {
        raw.buf = Buffer.concat([raw.buf, chunk]);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      status = head.subarray(0, end).toString('latin1').split('\r\n')[0]!;
      raw.buf = head.subarray(end + 4);
    });
    await withTimeout(
      new Promise<void>((resolve) => socket.once('connect', () => resolve())),
      options.timeoutMs ?? 3_000,
      'TCP connect',
    );
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${UPGRADE_HEADERS}${headerLines(headers)}\r\n`);
    await waitFor(() => status !== '' || raw.ended, options.timeoutMs ?? 3_000, `101 for ${path}`, 2);
    if (!status.startsWith('HTTP/1.1 101')) {
      socket.destroy();
      throw new Error(`upgrade refused: ${status || 'connection closed'}`);
    }
    return raw;
  }

  get data(): Buffer {
    return this.buf;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  frames(): WireFrame[] {
    return parseServerFrames(this.buf);
  }

  closeFrame(): { code: number; reason: string } | undefined {
    return closeFrameIn(this.buf);
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  sendText(text: string | Buffer): void {
    this.write(clientFrame(0x1, typeof text === 'string' ? Buffer.from(text) : text));
  }

  /** Stop reading: the kernel receive buffer fills, then the relay's writes back up. */
  stopReading(): void {
    this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The TCP socket under a ws client (to pause its reading). */
export function underlying(client: { ws: WebSocket }): Socket {
  return (client.ws as unknown as { _socket: Socket })._socket;
}
