// Load generator, in its own process, driven over IPC by bench/run.ts. It plays binaries and
// phones against either the relay (routing envelopes) or the bare forwarder (raw frames) on
// 127.0.0.1 only, and every run is bounded in connections and time.

import { createHash } from 'node:crypto';
import { connect as connectTcp, type Socket } from 'node:net';
import WebSocket from 'ws';

type Target = 'relay' | 'bare';

export interface Topology {
  target: Target;
  port: number;
  ids: number;
  phonesPerId: number;
  /** Source addresses to spread connections over (127.0.0.x), so a large run does not exhaust one
   * address's ephemeral ports. Default: the system's choice. */
  localAddresses?: string[];
}

export type Command =
  /** Connections of one topology, learned conn_ids included. `slot` (default 0) keeps several
   * servers' connections open side by side: a setup replaces only its own slot's. */
  | { cmd: 'setup'; topology: Topology; slot?: number }
  | {
      cmd: 'throughput';
      /** The slot whose connections carry the run (default: the last one set up). */
      slot?: number;
      direction: 'p2b' | 'b2p' | 'echo';
      frameBytes: number;
      warmupMs: number;
      measureMs: number;
      /** Offer exactly this many frames per second (spread over the groups, sent every millisecond)
       * instead of as many as the window allows: every target then sees the same arrival pattern,
       * so CPU per frame compares the servers' work, not how their pace shaped the batches. */
      ratePerSec?: number;
    }
  | { cmd: 'latency'; ratePerSec: number; frameBytes: number; warmupMs: number; measureMs: number }
  | {
      cmd: 'connect';
      topology: Topology;
      concurrency: number;
      limitMs?: number;
      /** 'ws' (default): full ws clients, as a real phone; 'raw': the cheap handshake-only client
       * below, so the server, not the load generator, limits an upgrade-rate run. */
      client?: 'ws' | 'raw';
    }
  | { cmd: 'teardown'; limitMs?: number };

/** The bench client masks with zeros so its own CPU goes to moving frames (never do this in a real client). */
const CLIENT_OPTIONS: WebSocket.ClientOptions = {
  perMessageDeflate: false,
  skipUTF8Validation: true,
  generateMask: (mask: Buffer) => {
    mask.fill(0);
  },
};
const SEND = { binary: false } as const;
/** Keep at most this much queued per sending socket. */
const SEND_WINDOW_BYTES = 256 * 1024;
/** No single run may take longer than this (a hung relay must not hang the bench). */
const RUN_LIMIT_MS = 60_000;

interface Group {
  binary: WebSocket;
  phones: WebSocket[];
  /** Envelope prefixes `{"conn_id":"…","frame":` per phone (relay target). */
  prefixes: Buffer[];
  next: number;
}

/** The connections a run uses: one slot's (below). */
let topology: Topology | undefined;
let groups: Group[] = [];
/** Every slot's connections, so the orchestrator can switch servers between runs without
 * reconnecting (the same cell measured on every server within seconds). */
const slots = new Map<number, { topology: Topology; groups: Group[] }>();
let received = 0;
let onPhoneMessage: ((group: Group, index: number, data: Buffer) => void) | undefined;
let onBinaryMessage: ((group: Group, data: Buffer) => void) | undefined;

function open(url: string, headers: Record<string, string>, localAddress?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ...CLIENT_OPTIONS, headers, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`connect timeout ${url}`));
    }, 10_000);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new Error(`HTTP ${res.statusCode} from ${url}`));
    });
  });
}

async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  });
  await Promise.all(workers);
  return results;
}

/** The raw client's one Sec-WebSocket-Key (RFC 6455's sample nonce) and the accept value a correct
 * server answers with, computed here rather than copied. */
const RAW_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const RAW_ACCEPT = createHash('sha1').update(`${RAW_KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
const SWITCHING_PROTOCOLS = 'HTTP/1.1 101 Switching Protocols\r\n';
/** A handshake answer longer than this without its blank line is refused. */
const MAX_ANSWER_BYTES = 8 * 1024;
/** Sockets opened by the raw client, held until teardown. */
let rawSockets: Socket[] = [];
const discard = (): void => {};

function rawRequest(path: string, headers: Record<string, string>): Buffer {
  let text = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`;
  text += `Sec-WebSocket-Key: ${RAW_KEY}\r\nSec-WebSocket-Version: 13\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** True when the answer's header block has exactly the expected Sec-WebSocket-Accept. */
function acceptMatches(head: string): boolean {
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    if (line.slice(0, colon).trim().toLowerCase() !== 'sec-websocket-accept') continue;
    return line.slice(colon + 1).trim() === RAW_ACCEPT;
  }
  return false;
}

/** A handshake-only client: one pre-built request, the exact 101 status line and accept value
 * checked, then the socket is held open (whatever the server sends later is discarded). It does
 * none of a ws client's per-connection work (key generation, request object, SHA-1 check, frame
 * parser), so an upgrade-rate run measures the server. */
function openRaw(port: number, request: Buffer, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp({ host: '127.0.0.1', port, noDelay: true, ...(localAddress ? { localAddress } : {}) });
    let head = '';
    let settled = false;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(message));
    };
    const timer = setTimeout(() => fail(`raw connect timeout on port ${port}`), 10_000);
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_ANSWER_BYTES) fail('handshake answer without an end');
        return;
      }
      socket.off('data', onData);
      socket.on('data', discard);
      if (!head.startsWith(SWITCHING_PROTOCOLS)) {
        fail(`handshake refused: ${head.slice(0, head.indexOf('\r\n'))}`);
      } else if (!acceptMatches(head.slice(0, end))) {
        fail('wrong or missing Sec-WebSocket-Accept');
      } else {
        settled = true;
        clearTimeout(timer);
        resolve(socket);
      }
    };
    socket.on('data', onData);
    socket.on('error', (err) => fail(err.message));
    socket.on('close', () => fail('closed during the handshake'));
    socket.write(request);
  });
}

/** The same connections as setup() (binaries first, then their phones), made by the raw client. */
async function rawSetup(t: Topology, concurrency: number): Promise<{ connectMs: number }> {
  await teardown();
  const sources = t.localAddresses ?? [];
  const source = (n: number): string | undefined => (sources.length === 0 ? undefined : sources[n % sources.length]);
  const runId = Math.random().toString(16).slice(2, 8);
  const idOf = (i: number): string => `bench-${runId}-${i}`;
  const binaryRequests = Array.from({ length: t.ids }, (_, i) =>
    rawRequest('/v1/server', { 'X-Pyrycode-Server': idOf(i), 'X-Pyrycode-Version': 'bench', 'User-Agent': 'bench' }),
  );
  const phoneRequests = Array.from({ length: t.ids }, (_, i) =>
    rawRequest('/v1/client', { 'X-Pyrycode-Server': idOf(i), 'X-Pyrycode-Token': 'bench', 'User-Agent': 'bench' }),
  );
  const started = performance.now();
  const binaries = await pool(t.ids, concurrency, (i) => openRaw(t.port, binaryRequests[i]!, source(i)));
  const phones = await pool(t.ids * t.phonesPerId, concurrency, (n) =>
    openRaw(t.port, phoneRequests[Math.floor(n / t.phonesPerId)]!, source(t.ids + n)),
  );
  const connectMs = performance.now() - started;
  rawSockets = [...binaries, ...phones];
  return { connectMs };
}

/** Opens every binary, then every phone, `concurrency` handshakes in flight at any moment. Without
 * a slot every earlier connection is closed first; with one, only that slot's. */
async function setup(t: Topology, concurrency = 64, learn = true, slot?: number): Promise<{ connectMs: number }> {
  if (slot === undefined) await teardown();
  else await closeAll(slots.get(slot)?.groups ?? []);
  topology = t;
  const base = `ws://127.0.0.1:${t.port}`;
  const sources = t.localAddresses ?? [];
  const source = (n: number): string | undefined => (sources.length === 0 ? undefined : sources[n % sources.length]);
  const started = performance.now();
  const runId = Math.random().toString(16).slice(2, 8);
  const idOf = (i: number): string => `bench-${runId}-${i}`;
  const binaries = await pool(t.ids, concurrency, (i) =>
    open(
      `${base}/v1/server`,
      { 'X-Pyrycode-Server': idOf(i), 'X-Pyrycode-Version': 'bench', 'User-Agent': 'bench' },
      source(i),
    ),
  );
  const phoneHeaders = binaries.map((_, i) => ({
    'X-Pyrycode-Server': idOf(i),
    'X-Pyrycode-Token': 'bench',
    'User-Agent': 'bench',
  }));
  const phones = await pool(t.ids * t.phonesPerId, concurrency, (n) =>
    open(`${base}/v1/client`, phoneHeaders[Math.floor(n / t.phonesPerId)]!, source(t.ids + n)),
  );
  groups = binaries.map((binary, i) => ({
    binary,
    phones: phones.slice(i * t.phonesPerId, (i + 1) * t.phonesPerId),
    prefixes: [],
    next: 0,
  }));
  slots.set(slot ?? 0, { topology: t, groups });
  const connectMs = performance.now() - started;
  for (const group of groups) {
    group.binary.on('message', (data: Buffer) => onBinaryMessage?.(group, data));
    group.phones.forEach((phone, index) => {
      phone.on('message', (data: Buffer) => onPhoneMessage?.(group, index, data));
    });
  }
  if (t.target === 'relay' && learn) await learnConnIds();
  return { connectMs };
}

/** Each phone says hello once; its envelope tells the binary the phone's conn_id. */
async function learnConnIds(): Promise<void> {
  let pending = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('conn_id discovery timed out')), 20_000);
    onBinaryMessage = (group, data) => {
      const text = data.toString('utf8');
      const envelope = JSON.parse(text) as { conn_id: string; frame: { hello: number } };
      group.prefixes[envelope.frame.hello] = Buffer.from(`{"conn_id":${JSON.stringify(envelope.conn_id)},"frame":`);
      if (--pending === 0) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (const group of groups) {
      group.phones.forEach((phone, index) => {
        pending++;
        phone.send(`{"hello":${index}}`, SEND);
      });
    }
    if (pending === 0) resolve();
  });
  onBinaryMessage = undefined;
}

/** A JSON frame of exactly `bytes` bytes: {"p":"xxxx…"}. */
function payload(bytes: number, seq = 0): Buffer {
  const head = `{"s":${seq},"p":"`;
  const fill = Math.max(0, bytes - head.length - 2);
  return Buffer.from(head + 'x'.repeat(fill) + '"}');
}

function envelope(group: Group, index: number, frame: Buffer): Buffer {
  if (topology!.target === 'bare') return frame;
  const prefix = group.prefixes[index]!;
  return Buffer.concat([prefix, frame, CLOSE_BRACE]);
}
const CLOSE_BRACE = Buffer.from('}');

/** Bytes all groups together may have in flight: enough to keep any server busy, small enough
 * that a run drains in well under a second when it ends. */
const IN_FLIGHT_BYTES = 8 * 1024 * 1024;

/** Frames one group (a binary and its phones) may have in flight, so a fast sender measures the
 * path instead of filling queues until a backlog limit closes the receiver: at most 512 frames or
 * 2 MiB per group, and the groups' share of IN_FLIGHT_BYTES. */
function windowFrames(frameBytes: number, groupCount: number): number {
  const share = Math.min(2 * 1024 * 1024, IN_FLIGHT_BYTES / Math.max(1, groupCount));
  return Math.max(4, Math.min(512, Math.floor(share / frameBytes)));
}

interface Flow {
  /** Sockets that send, taken in turn. */
  senders: WebSocket[];
  next: (senderIndex: number) => Buffer;
  sent: number;
  received: number;
  turn: number;
}

async function throughput(
  direction: 'p2b' | 'b2p' | 'echo',
  frameBytes: number,
  warmupMs: number,
  measureMs: number,
  ratePerSec?: number,
): Promise<{ framesPerSec: number; frames: number; seconds: number; totalFrames: number; offered: number }> {
  const frame = payload(frameBytes);
  const window = windowFrames(frameBytes, groups.length);
  const flows: Flow[] = [];
  const flowOf = new Map<Group, Flow>();
  for (const group of groups) {
    let flow: Flow;
    if (direction === 'b2p') {
      const envelopes = group.phones.map((_, i) => envelope(group, i, frame));
      flow = {
        senders: [group.binary],
        next: () => envelopes[group.next++ % envelopes.length]!,
        sent: 0,
        received: 0,
        turn: 0,
      };
    } else {
      flow = { senders: group.phones, next: () => frame, sent: 0, received: 0, turn: 0 };
    }
    flows.push(flow);
    flowOf.set(group, flow);
  }
  received = 0;
  if (direction === 'p2b') {
    onBinaryMessage = (group) => {
      flowOf.get(group)!.received++;
      received++;
    };
  } else if (direction === 'b2p') {
    onPhoneMessage = (group) => {
      flowOf.get(group)!.received++;
      received++;
    };
  } else {
    // Round trips: the binary echoes each phone frame back to the phone that sent it.
    const prefixLength = topology!.target === 'relay' ? groups[0]!.prefixes[0]!.length : 0;
    onBinaryMessage = (group, data) => {
      if (topology!.target === 'bare') {
        group.binary.send(data, SEND);
        return;
      }
      const index = group.prefixes.findIndex((p) => data.compare(p, 0, p.length, 0, p.length) === 0);
      group.binary.send(
        Buffer.concat([group.prefixes[index]!, data.subarray(prefixLength, data.length - 1), CLOSE_BRACE]),
        SEND,
      );
    };
    onPhoneMessage = (group) => {
      flowOf.get(group)!.received++;
      received++;
    };
  }
  let running = true;
  let offered = 0;
  /** Sends one frame of `flow` if its window allows; false when it does not. */
  const sendOne = (flow: Flow): boolean => {
    if (flow.sent - flow.received >= window) return false;
    const ws = flow.senders[flow.turn++ % flow.senders.length]!;
    if (ws.bufferedAmount >= SEND_WINDOW_BYTES || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(flow.next(flow.turn), SEND);
    flow.sent++;
    return true;
  };
  const pump = (): void => {
    if (!running) return;
    for (const flow of flows) while (sendOne(flow));
    setImmediate(pump);
  };
  let paced: NodeJS.Timeout | undefined;
  if (ratePerSec === undefined) {
    pump();
  } else {
    // Paced: every millisecond, the frames due since the last tick, taken from the groups in turn.
    // A frame the window refuses is not made up later (the server fell behind; `offered` says so).
    let credit = 0;
    let last = performance.now();
    let nextFlow = 0;
    paced = setInterval(() => {
      const now = performance.now();
      credit += ((now - last) * ratePerSec) / 1000;
      last = now;
      for (; credit >= 1; credit--) {
        offered++;
        sendOne(flows[nextFlow++ % flows.length]!);
      }
    }, 1);
  }
  await sleep(warmupMs);
  const startCount = received;
  const start = performance.now();
  await sleep(measureMs);
  const frames = received - startCount;
  const seconds = (performance.now() - start) / 1000;
  running = false;
  clearInterval(paced);
  // Drain: wait until everything sent has arrived (bounded), so runs do not bleed into each other.
  const drainUntil = performance.now() + 5_000;
  while (flows.some((f) => f.received < f.sent) && performance.now() < drainUntil) await sleep(10);
  onBinaryMessage = undefined;
  onPhoneMessage = undefined;
  return { framesPerSec: frames / seconds, frames, seconds, totalFrames: received, offered };
}

async function latency(
  ratePerSec: number,
  frameBytes: number,
  warmupMs: number,
  measureMs: number,
): Promise<{ p50Ms: number; p99Ms: number; p999Ms: number; samples: number; ratePerSec: number }> {
  const group = groups[0]!;
  const phone = group.phones[0]!;
  const sentAt = new Map<number, number>();
  const samples: number[] = [];
  let recording = false;
  // The binary echoes every phone frame back to that phone.
  const prefixLength = topology!.target === 'relay' ? group.prefixes[0]!.length : 0;
  onBinaryMessage = (g, data) => {
    if (topology!.target === 'bare') {
      g.binary.send(data, SEND);
      return;
    }
    // Envelope in = prefix + frame + '}' (the relay forwards compact frames unchanged).
    const frame = data.subarray(prefixLength, data.length - 1);
    g.binary.send(Buffer.concat([g.prefixes[0]!, frame, CLOSE_BRACE]), SEND);
  };
  onPhoneMessage = (_g, _i, data) => {
    const seq = Number(/^\{"s":(\d+)/.exec(data.toString('latin1', 0, 24))?.[1]);
    const t0 = sentAt.get(seq);
    if (t0 === undefined) return;
    sentAt.delete(seq);
    if (recording) samples.push(performance.now() - t0);
  };
  let seq = 0;
  const intervalMs = 1;
  const perTick = ratePerSec / 1000;
  let credit = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    credit += (now - last) * perTick;
    last = now;
    while (credit >= 1) {
      credit--;
      const s = seq++;
      sentAt.set(s, performance.now());
      phone.send(payload(frameBytes, s), SEND);
    }
  }, intervalMs);
  await sleep(warmupMs);
  recording = true;
  await sleep(measureMs);
  recording = false;
  clearInterval(timer);
  await sleep(200);
  onBinaryMessage = undefined;
  onPhoneMessage = undefined;
  samples.sort((a, b) => a - b);
  const q = (p: number): number => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? NaN;
  return { p50Ms: q(0.5), p99Ms: q(0.99), p999Ms: q(0.999), samples: samples.length, ratePerSec };
}

async function teardown(): Promise<void> {
  const all = [...slots.values()].flatMap((s) => s.groups);
  slots.clear();
  groups = [];
  const raw = rawSockets;
  rawSockets = [];
  await Promise.all(
    raw.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.destroyed) return resolve();
          socket.once('close', () => resolve());
          socket.destroy();
        }),
    ),
  );
  await closeAll(all);
}

async function closeAll(closing: Group[]): Promise<void> {
  const all: WebSocket[] = [];
  for (const group of closing) all.push(group.binary, ...group.phones);
  await Promise.all(
    all.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once('close', () => resolve());
          ws.terminate();
        }),
    ),
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function handle(command: Command): Promise<unknown> {
  switch (command.cmd) {
    case 'setup':
      return setup(command.topology, 64, true, command.slot);
    case 'connect': {
      // Connections only (idle holding, upgrade rate): no frame is sent.
      const { connectMs } =
        command.client === 'raw'
          ? await rawSetup(command.topology, command.concurrency)
          : await setup(command.topology, command.concurrency, false);
      const connections = command.topology.ids * (command.topology.phonesPerId + 1);
      return { connectMs, connections, perSec: connections / (connectMs / 1000) };
    }
    case 'throughput':
      if (command.slot !== undefined) {
        const chosen = slots.get(command.slot);
        if (chosen === undefined) throw new Error(`no connections in slot ${command.slot}`);
        ({ topology, groups } = chosen);
      }
      return throughput(command.direction, command.frameBytes, command.warmupMs, command.measureMs, command.ratePerSec);
    case 'latency':
      return latency(command.ratePerSec, command.frameBytes, command.warmupMs, command.measureMs);
    case 'teardown':
      await teardown();
      return {};
  }
}

process.on('message', (message: unknown) => {
  const command = message as Command;
  const limitMs = 'limitMs' in command && command.limitMs !== undefined ? command.limitMs : RUN_LIMIT_MS;
  const limit = setTimeout(() => {
    process.send?.({ error: `run limit of ${limitMs} ms exceeded for ${command.cmd}` });
    process.exit(1);
  }, limitMs);
  handle(command).then(
    (result) => {
      clearTimeout(limit);
      process.send?.({ result });
    },
    (err: unknown) => {
      clearTimeout(limit);
      process.send?.({ error: err instanceof Error ? err.message : String(err) });
    },
  );
});
process.on('disconnect', () => process.exit(0));
// Tells the orchestrator that commands can come (a message sent before the listener above exists
// would be lost).
process.send?.({ ready: true });
