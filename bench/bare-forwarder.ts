// Baseline (a): the least a relay can do. Phones on /v1/client and one upstream per server-id on
// /v1/server; phone frames are piped to the upstream as they are, upstream frames go to that id's
// phones in turn. No envelope, registry, limits, heartbeat or metrics.
//
// Usage: node dist/bench/bare-forwarder.js PORT   (prints "ready <port>" on stdout)

import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

const port = Number(process.argv[2] ?? 0);
const upstreams = new Map<string, WebSocket>();
const phones = new Map<string, { list: WebSocket[]; next: number }>();
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: 256 * 1024,
  clientTracking: false,
});
const server = createServer();
const SEND = { binary: false } as const;

server.on('upgrade', (req, socket, head) => {
  const id = String(req.headers['x-pyrycode-server'] ?? '');
  const path = req.url ?? '';
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => {});
    if (path.startsWith('/v1/server')) {
      upstreams.set(id, ws);
      ws.on('message', (data: Buffer) => {
        const group = phones.get(id);
        if (group === undefined || group.list.length === 0) return;
        const phone = group.list[group.next++ % group.list.length]!;
        phone.send(data, SEND);
      });
      ws.on('close', () => upstreams.delete(id));
      return;
    }
    let group = phones.get(id);
    if (group === undefined) {
      group = { list: [], next: 0 };
      phones.set(id, group);
    }
    group.list.push(ws);
    ws.on('message', (data: Buffer) => upstreams.get(id)?.send(data, SEND));
    ws.on('close', () => {
      const g = phones.get(id);
      if (g !== undefined) g.list = g.list.filter((p) => p !== ws);
    });
  });
});

server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`ready ${typeof address === 'object' && address ? address.port : port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
