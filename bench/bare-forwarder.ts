// Baseline (a): the best a plain ws forwarder can do, the limit the relay is measured against.
// Phones on /v1/client and one upstream per server-id on /v1/server; phone frames are piped to the
// upstream as they are, upstream frames go to that id's phones in turn. No envelope, registry,
// limits, heartbeat or metrics, but the relay's own ws options and its per-tick corking (every
// frame sent in one tick leaves in one writev), so the gap it shows is the relay's work, not a
// naive pipe's syscalls. ws still validates the UTF-8 of text frames here, as any forwarder of
// text frames must.
//
// Usage: node dist/bench/bare-forwarder.js PORT   (prints "ready <port>" on stdout)
// IPC: 'mem' answers RSS and heap after a forced GC (run with --expose-gc) and the live count;
// 'live' just the live count; 'cpu' the CPU time used so far (user + system, µs, all threads).

import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { MAX_MESSAGE_BYTES } from '../src/relay.js';
import { CLOSE_HANDSHAKE_TIMEOUT_MS } from '../src/session/peer.js';

const port = Number(process.argv[2] ?? 0);
const upstreams = new Map<string, WebSocket>();
const phones = new Map<string, { list: WebSocket[]; next: number }>();
/** The options src/relay.ts gives its WebSocketServer. */
const wss = new WebSocketServer({
  ...({ closeTimeout: CLOSE_HANDSHAKE_TIMEOUT_MS } as object),
  noServer: true,
  clientTracking: false,
  maxPayload: MAX_MESSAGE_BYTES,
  perMessageDeflate: false,
  handleProtocols: () => false,
  autoPong: true,
});
const server = createServer();
const SEND = { binary: false } as const;
let live = 0;

/** Sockets corked in this tick; uncorked together before any I/O runs again. */
const corked = new Set<Socket>();
const uncorkAll = (): void => {
  for (const socket of corked) socket.uncork();
  corked.clear();
};

function send(ws: WebSocket, data: Buffer): void {
  const socket = (ws as unknown as { _socket: Socket })._socket;
  if (!corked.has(socket)) {
    if (corked.size === 0) process.nextTick(uncorkAll);
    corked.add(socket);
    socket.cork();
  }
  ws.send(data, SEND);
}

server.on('upgrade', (req, socket, head) => {
  const id = String(req.headers['x-pyrycode-server'] ?? '');
  const path = req.url ?? '';
  wss.handleUpgrade(req, socket, head, (ws) => {
    live++;
    ws.on('error', () => {});
    if (path.startsWith('/v1/server')) {
      upstreams.set(id, ws);
      ws.on('message', (data: Buffer) => {
        const group = phones.get(id);
        if (group === undefined || group.list.length === 0) return;
        const phone = group.list[group.next++ % group.list.length]!;
        send(phone, data);
      });
      ws.on('close', () => {
        live--;
        upstreams.delete(id);
      });
      return;
    }
    let group = phones.get(id);
    if (group === undefined) {
      group = { list: [], next: 0 };
      phones.set(id, group);
    }
    group.list.push(ws);
    ws.on('message', (data: Buffer) => {
      const upstream = upstreams.get(id);
      if (upstream !== undefined) send(upstream, data);
    });
    ws.on('close', () => {
      live--;
      const g = phones.get(id);
      if (g === undefined) return;
      g.list = g.list.filter((p) => p !== ws);
      if (g.list.length === 0) phones.delete(id);
    });
  });
});

process.on('message', (msg: unknown) => {
  if (msg === 'cpu') {
    const c = process.cpuUsage();
    process.send?.({ cpuUs: c.user + c.system });
  } else if (msg === 'live') {
    process.send?.({ live });
  } else if (msg === 'mem') {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    process.send?.({ rss: m.rss, heapUsed: m.heapUsed, live });
  }
});

server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`ready ${typeof address === 'object' && address ? address.port : port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
