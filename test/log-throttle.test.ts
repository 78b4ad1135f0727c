// The per-cause log throttle (src/log-throttle.ts) on its own, with a fake clock: first lines per
// key and window, the per-event cap, summaries, bounded keys, untouched events, and the pending
// bound of the logger itself (src/log.ts).

import { describe, expect, it } from 'vitest';
import { createLogger, MAX_PENDING_LOG_BYTES } from '../src/log.js';
import {
  LOG_FIRST_LINES_PER_KEY,
  LOG_LINES_PER_EVENT,
  LOG_THROTTLE_MAX_KEYS,
  LOG_THROTTLE_WINDOW_MS,
  THROTTLED_EVENT_NAMES,
  ThrottledLogger,
} from '../src/log-throttle.js';
import { LOG_SUPPRESSED_EVENTS } from '../src/metrics/metrics.js';

function collector(): { lines: Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger('json', { write: (l: string) => lines.push(JSON.parse(l)) }) };
}

describe('ThrottledLogger', () => {
  it('the metric labels are exactly the throttled events', () => {
    expect([...LOG_SUPPRESSED_EVENTS]).toEqual(THROTTLED_EVENT_NAMES);
  });

  it('first lines per key per window, then counted; a summary per event; a new window starts over', () => {
    let now = 0;
    const { lines, log } = collector();
    const t = new ThrottledLogger(log, { now: () => now });
    for (let i = 0; i < 25; i++) t.warn('binary_forwarder_unmarshal_err', { binary_conn_id: 'a', err: 'x' });
    for (let i = 0; i < 3; i++) t.warn('binary_forwarder_unmarshal_err', { binary_conn_id: 'b', err: 'x' });
    for (let i = 0; i < 50; i++) t.info('phone_registered', { conn_id: 'c' }); // not throttled
    expect(lines.filter((l) => l.msg === 'binary_forwarder_unmarshal_err')).toHaveLength(LOG_FIRST_LINES_PER_KEY + 3);
    expect(lines.filter((l) => l.msg === 'phone_registered')).toHaveLength(50);
    expect(t.suppressed.binary_forwarder_unmarshal_err).toBe(25 - LOG_FIRST_LINES_PER_KEY);
    t.flush();
    expect(lines.at(-1)).toMatchObject({
      level: 'WARN',
      msg: 'log_suppressed',
      event: 'binary_forwarder_unmarshal_err',
      count: 25 - LOG_FIRST_LINES_PER_KEY,
    });
    t.flush(); // nothing pending: no line
    expect(lines.filter((l) => l.msg === 'log_suppressed')).toHaveLength(1);
    now += LOG_THROTTLE_WINDOW_MS;
    t.warn('binary_forwarder_unmarshal_err', { binary_conn_id: 'a', err: 'x' });
    expect(lines.at(-1)).toMatchObject({ msg: 'binary_forwarder_unmarshal_err' });
  });

  it('at most LOG_LINES_PER_EVENT lines per event and window across keys', () => {
    const { lines, log } = collector();
    const t = new ThrottledLogger(log, { now: () => 0 });
    for (let k = 0; k < 50; k++) for (let i = 0; i < 5; i++) t.warn('rate_limited', { remote: `"10.0.${k}.1"` });
    expect(lines).toHaveLength(LOG_LINES_PER_EVENT);
    expect(t.suppressed.rate_limited).toBe(250 - LOG_LINES_PER_EVENT);
  });

  it('the key table is bounded: new keys beyond it are suppressed until windows end', () => {
    let now = 0;
    const { lines, log } = collector();
    const t = new ThrottledLogger(log, { now: () => now });
    for (let k = 0; k < LOG_THROTTLE_MAX_KEYS + 5; k++) {
      if (k % LOG_LINES_PER_EVENT === 0) now += LOG_THROTTLE_WINDOW_MS / 1_000; // keep the event cap out of it
      t.warn('conn_cap_reached', { remote: `k${k}`, path: '/v1/client' });
    }
    expect(t.suppressed.conn_cap_reached).toBeGreaterThanOrEqual(5);
    now += LOG_THROTTLE_WINDOW_MS;
    t.flush(); // forgets ended windows
    const before = lines.length;
    t.warn('conn_cap_reached', { remote: 'fresh', path: '/v1/client' });
    expect(lines.length).toBe(before + 1);
  });
});

describe('createLogger output bound', () => {
  it('drops lines while more than MAX_PENDING_LOG_BYTES are unwritten, counts them, and says so once it can', () => {
    const written: string[] = [];
    const sink = { writableLength: 0, write: (l: string) => written.push(l) };
    const log = createLogger('text', sink);
    log.info('a');
    sink.writableLength = MAX_PENDING_LOG_BYTES + 1;
    log.info('b');
    log.info('c');
    expect(log.droppedLines).toBe(2);
    sink.writableLength = 0;
    log.info('d');
    expect(written.map((l) => l.replace(/^time=\S+ /, ''))).toEqual([
      'level=INFO msg=a\n',
      'level=WARN msg=log_dropped count=2\n',
      'level=INFO msg=d\n',
    ]);
    expect(log.droppedLines).toBe(2);
  });
});
