// Micro-benchmark for the copy in src/session/retained.ts (issue #14.1): what ownedFrame costs per
// frame when the frame is a small view of a big buffer (it copies) and when it is not (it only
// compares two numbers), next to a pooled Buffer.from copy for reference.
//
// Usage: npx tsc -p . && node dist/bench/retained-copy.js

import { ownedFrame } from '../src/session/retained.js';

const ITERATIONS = 200_000;

function measure(name: string, frames: Buffer[], op: (b: Buffer) => Buffer): void {
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += op(frames[i % frames.length]!).length; // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) sink += op(frames[i % frames.length]!).length;
  const ns = Number(process.hrtime.bigint() - t0) / ITERATIONS;
  console.log(`${name.padEnd(52)} ${ns.toFixed(1).padStart(8)} ns/frame   (${sink > 0 ? 'ok' : ''})`);
}

const chunk = Buffer.alloc(64 * 1024, 0x31);
for (const size of [1, 64, 1024, 16 * 1024]) {
  // Views of one 64 KiB chunk, as ws delivers small messages read together.
  const views = Array.from({ length: 64 }, (_, i) => chunk.subarray(i * 16, i * 16 + size));
  measure(`ownedFrame, ${size} B view of a 64 KiB chunk (copies)`, views, ownedFrame);
  measure(`Buffer.from, ${size} B view (pooled copy, reference)`, views, (b) => Buffer.from(b));
}
// A frame that is most of its buffer: no copy.
const own = Array.from({ length: 64 }, () => Buffer.alloc(64 * 1024).subarray(60));
measure('ownedFrame, 64 KiB frame in its own envelope (no copy)', own, ownedFrame);
