// Shared tools for the reliability suite (test/reliability/): raw TCP/WebSocket peers that
// misbehave on purpose, metric snapshots and diffs, resource and heap probes, a continuous sampler
// and a figure recorder. Nothing here changes the relay; everything talks to it over 127.0.0.1.

import { connect as netConnect, type Socket } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { RelayOptions } from '../../src/relay.js';
import { startRelay, type LogLine, type TestClient, type TestRelay } from './relay.js';
import { waitFor, withTimeout } from './wait.js';

// ---------------------------------------------------------------------------------------------
// Figures: every measured number is printed on one greppable line, so a CI log or a local run
// gives the values docs/reliability.md records.

export function figure(name: string, value: unknown): void {
  console.log(`[reliability] ${name} = ${typeof value === 'string' ? value : JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP

export interface RawAnswer {
  /** Status code of the first response line, 0 if the server wrote nothing parseable. */
  status: number;
  /** Everything the server wrote (latin1). */
  text: string;
  /** True if the server closed (or reset) the connection within the wait. */
  closed: boolean;
  /** Milliseconds from the first byte sent until the close (or until the wait ended). */
  ms: number;
}

export interface RawOptions {
  /** Source address, e.g. '127.0.0.7' (all of 127/8 routes to lo on Linux). */
  localAddress?: string;
  /** How long to wait for the server to close after the last byte was sent. */
  waitMs?: number;
  /** Resolve as soon as a complete status line arrived (keep-alive answers never close). */
  untilStatus?: boolean;
}

/** Sends `request` (string or chunks with delays) and reports what came back. The socket is always
 * destroyed before this resolves. */
export function rawRequest(port: number, request: string | Buffer, options: RawOptions = {}): Promise<RawAnswer> {
  const waitMs = options.waitMs ?? 5_000;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    let t0 = 0;
    const socket = netConnect({ host: '127.0.0.1', port, localAddress: options.localAddress }, () => {
      t0 = Date.now();
      socket.write(request);
    });
    const finish = (): void => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      socket.destroy();
      resolve({ status: m ? Number(m[1]) : 0, text, closed, ms: Date.now() - (t0 || Date.now()) });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (
        options.untilStatus &&
        /^HTTP\/1\.[01] \d{3}[^\r\n]*\r\n[\s\S]*?\r\n\r\n/.test(Buffer.concat(chunks).toString('latin1'))
      ) {
        finish();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      finish();
    });
  });
}

export const UPGRADE_HEADERS =
  'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

export function headerLines(headers: Record<string, string>): string {
  return Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames on the wire

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
    return closeOf(this.frames().find((f) => f.opcode === 0x8));
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

export function underlying(client: TestClient): Socket {
  return (client.ws as unknown as { _socket: Socket })._socket;
}

// ---------------------------------------------------------------------------------------------
// Metrics

/** Every `pyrycode_relay_*` sample of a scrape, keyed by series text (name plus labels). */
export function relaySamples(scrape: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of scrape.split('\n')) {
    if (!line.startsWith('pyrycode_relay_')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

/** Series whose value differs between two snapshots: series -> after - before. */
export function sampleDiff(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const diff: Record<string, number> = {};
  for (const [series, value] of after) {
    const d = value - (before.get(series) ?? 0);
    if (d !== 0) diff[series] = d;
  }
  for (const series of before.keys()) if (!after.has(series)) diff[series] = Number.NaN;
  return diff;
}

export async function snapshot(r: TestRelay): Promise<Map<string, number>> {
  return relaySamples(await r.scrape());
}

export const upgradeCell = (endpoint: 'server' | 'client', outcome: string): string =>
  `pyrycode_relay_ws_upgrade_attempts_total{endpoint="${endpoint}",outcome="${outcome}"}`;
export const registerCell = (kind: string): string => `pyrycode_relay_register_failures_total{kind="${kind}"}`;
export const B2P = 'pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}';
export const P2B = 'pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"}';
export const GAUGE_BINARIES = 'pyrycode_relay_connected_binaries';
export const GAUGE_PHONES = 'pyrycode_relay_connected_phones';
export const GRACE_EXPIRIES = 'pyrycode_relay_grace_expiries_total';

// ---------------------------------------------------------------------------------------------
// Relay internals the tests may read (never write): the registry's maps and the cap.

interface RegistryInternals {
  binaries: Map<string, unknown>;
  phones: Map<string, unknown[]>;
  graces: Map<string, unknown>;
}

/** Sizes of every relay-side structure that must return to zero when everybody left. */
export function relayState(r: TestRelay): {
  binaries: number;
  phoneLists: number;
  graces: number;
  counts: { binaries: number; phones: number };
  capUsed: number;
  live: number;
} {
  const reg = r.relay.registry as unknown as RegistryInternals;
  return {
    binaries: reg.binaries.size,
    phoneLists: reg.phones.size,
    graces: reg.graces.size,
    counts: r.relay.counts(),
    capUsed: r.relay.cap.used,
    live: r.relay.liveConnections,
  };
}

export function isEmpty(state: ReturnType<typeof relayState>): boolean {
  return (
    state.binaries === 0 &&
    state.phoneLists === 0 &&
    state.graces === 0 &&
    state.counts.binaries === 0 &&
    state.counts.phones === 0 &&
    state.capUsed === 0 &&
    state.live === 0
  );
}

// ---------------------------------------------------------------------------------------------
// Process resources

/** process.getActiveResourcesInfo() as counts per type (ref'd timers, sockets, servers...). */
export function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

let gcFn: (() => void) | undefined;
/** A full GC (vitest does not pass --expose-gc; the flag can still be set at run time). */
export function fullGc(): void {
  if (gcFn === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
  gcFn();
}

/** Heap in use after a full GC, in bytes. */
export function settledHeap(): number {
  fullGc();
  return process.memoryUsage().heapUsed;
}

export const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Continuous sampling on every event-loop turn (setImmediate), to catch momentary excursions.

export class Sampler<K extends string> {
  readonly max: Record<K, number>;
  samples = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(private readonly probe: () => Record<K, number>) {
    const first = probe();
    this.max = { ...first };
    this.done = new Promise((resolve) => {
      const tick = (): void => {
        if (!this.running) {
          resolve();
          return;
        }
        this.take();
        setImmediate(tick);
      };
      setImmediate(tick);
    });
  }

  private take(): void {
    const values = this.probe();
    this.samples++;
    for (const key of Object.keys(values) as K[]) {
      if (values[key] > this.max[key]) this.max[key] = values[key];
    }
  }

  async stop(): Promise<Record<K, number>> {
    this.running = false;
    await this.done;
    this.take();
    return this.max;
  }
}

// ---------------------------------------------------------------------------------------------
// Go's json.Marshal of a json.RawMessage (compact + HTML escaping), written independently of
// src/protocol/json.ts as a test oracle: drop whitespace outside strings; inside strings rewrite < > & as
// \u003c \u003e \u0026 and U+2028/U+2029 as \u2028/\u2029; copy every other byte.

export function goCompact(text: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (!inString) {
      if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue;
      if (ch === '"') inString = true;
      out += ch;
      continue;
    }
    if (ch === '\\') {
      out += ch + text[i + 1]!;
      i++;
    } else if (ch === '"') {
      inString = false;
      out += ch;
    } else if (ch === '<' || ch === '>' || ch === '&' || ch === '\u2028' || ch === '\u2029') {
      out += '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0');
    } else {
      out += ch;
    }
  }
  return out;
}

/** The reference relay's families (docs/metrics.md, "The series"; the reference relay's contract). Everything else
 * under pyrycode_relay_* is this project's own operator signals (docs/metrics.md). */
export const REFERENCE_FAMILIES = [
  'pyrycode_relay_connected_binaries',
  'pyrycode_relay_connected_phones',
  'pyrycode_relay_frames_forwarded_total',
  'pyrycode_relay_grace_expiries_total',
  'pyrycode_relay_ws_upgrade_attempts_total',
  'pyrycode_relay_register_failures_total',
  'pyrycode_relay_push_wakes_total',
];

function familyOf(series: string): string {
  const brace = series.indexOf('{');
  return brace < 0 ? series : series.slice(0, brace);
}

/** A diff split into the reference families and the operator-signal families. */
export function splitDiff(diff: Record<string, number>): {
  reference: Record<string, number>;
  extra: Record<string, number>;
} {
  const reference: Record<string, number> = {};
  const extra: Record<string, number> = {};
  for (const [series, d] of Object.entries(diff)) {
    if (REFERENCE_FAMILIES.includes(familyOf(series))) reference[series] = d;
    else extra[series] = d;
  }
  return { reference, extra };
}

export const httpErrorCell = (reason: string): string => `pyrycode_relay_http_errors_total{reason="${reason}"}`;
export const rejectionCell = (endpoint: 'server' | 'client', reason: string): string =>
  `pyrycode_relay_upgrade_rejections_total{endpoint="${endpoint}",reason="${reason}"}`;
export const closedCell = (endpoint: 'server' | 'client', reason: string): string =>
  `pyrycode_relay_connections_closed_total{endpoint="${endpoint}",reason="${reason}"}`;

/** The cells of one family in a diff. */
export function familyDiff(diff: Record<string, number>, family: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [series, d] of Object.entries(diff)) if (familyOf(series) === family) out[series] = d;
  return out;
}

export const HTTP_ERRORS = 'pyrycode_relay_http_errors_total';
export const UPGRADE_REJECTIONS = 'pyrycode_relay_upgrade_rejections_total';
export const CONNECTIONS_CLOSED = 'pyrycode_relay_connections_closed_total';

/** Deep equality of two JSON.parse results, iterative (10000-deep values overflow recursive
 * comparers and JSON.stringify). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  const stack: Array<[unknown, unknown]> = [[a, b]];
  while (stack.length > 0) {
    const [x, y] = stack.pop()!;
    if (x === y) continue;
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null) return false;
    if (Array.isArray(x) !== Array.isArray(y)) return false;
    const kx = Object.keys(x);
    const ky = Object.keys(y);
    if (kx.length !== ky.length) return false;
    for (let i = 0; i < kx.length; i++) {
      if (kx[i] !== ky[i]) return false;
      stack.push([(x as Record<string, unknown>)[kx[i]!], (y as Record<string, unknown>)[ky[i]!]]);
    }
  }
  return true;
}

// A relay whose log lines are handed to a callback and not kept: a soak of tens of thousands of
// connections must not measure the test's own log buffer as heap growth.

export function startQuietRelay(overrides: Partial<RelayOptions>, onLog: (line: LogLine) => void): Promise<TestRelay> {
  return startRelay(overrides, onLog);
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP JSON export payloads (the daemon's final flush after a drain)

interface OtlpPoint {
  asDouble?: number;
  asInt?: string | number;
  attributes?: { key: string; value: { stringValue?: string } }[];
}
interface OtlpPayload {
  resourceMetrics: {
    scopeMetrics: {
      metrics: { name: string; gauge?: { dataPoints: OtlpPoint[] }; sum?: { dataPoints: OtlpPoint[] } }[];
    }[];
  }[];
}

/** Sum of the points of metric `name` whose attributes include all of `attrs`. */
export function otlpSum(payload: unknown, name: string, attrs: Record<string, string> = {}): number {
  let total = 0;
  for (const rm of (payload as OtlpPayload).resourceMetrics) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        if (m.name !== name) continue;
        for (const p of m.sum?.dataPoints ?? m.gauge?.dataPoints ?? []) {
          const ok = Object.entries(attrs).every(([k, v]) =>
            p.attributes?.some((a) => a.key === k && a.value.stringValue === v),
          );
          if (ok) total += p.asDouble ?? Number(p.asInt);
        }
      }
    }
  }
  return total;
}
