// Loopback ports for tests: a port to hand to a daemon or a fake server, and whether something
// listens on one. Everything binds or dials 127.0.0.1 only.

import { readFileSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { withTimeout } from './wait.js';

// Why not "bind port 0, read it, close": the kernel may hand that port to anyone again before the
// daemon binds it (the next bind(0) of this or another test file, an outgoing connection), and
// once it gave the public and the metrics listener of one daemon the same port (CI: EADDRINUSE).
// Instead every test process takes ports from a block of its own below the kernel's ephemeral
// range, which bind(0) and connect() never pick, and never hands one out twice until its block
// wraps; a port something still listens on is skipped.

/** Ports per process block; a test file starts far fewer daemons and fake servers than this. */
const BLOCK_PORTS = 400;
/** Blocks below the ephemeral range: block 0 for processes outside vitest (the bench), 1.. for workers. */
const BLOCKS = 32;

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 1024 + BLOCK_PORTS * BLOCKS) return low;
  } catch {
    // Not Linux: fall through to the common default.
  }
  return 32_768;
}

const worker = Number(process.env['VITEST_POOL_ID'] ?? '0');
const blockStart =
  ephemeralLow() - BLOCK_PORTS * BLOCKS + ((Number.isInteger(worker) ? worker : 0) % BLOCKS) * BLOCK_PORTS;
// A fresh process of the same worker (the next test file) starts elsewhere in the block, so it does
// not hand out the ports the last file's daemons had a moment ago.
let nextOffset = process.pid % BLOCK_PORTS;

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A loopback port nobody listens on, from this process's own block: never one the kernel hands
 * out by itself, never one this process handed out before (until the block wraps). */
export function freePort(): Promise<number> {
  return withTimeout(
    (async () => {
      for (let tries = 0; tries < BLOCK_PORTS; tries++) {
        const port = blockStart + nextOffset;
        nextOffset = (nextOffset + 1) % BLOCK_PORTS;
        if (await bindable(port)) return port;
      }
      throw new Error(`no free port in ${blockStart}-${blockStart + BLOCK_PORTS - 1}`);
    })(),
    5_000,
    'a free port',
  );
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
