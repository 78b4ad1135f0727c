// The daemon's logger coalesces the lines of one event-loop turn into one write
// (src/log.ts LoggerOptions.coalesce; docs/operations.md, "Logs"): every line, in order, with
// its fields; the unwritten-output bound counts the batch; nothing is lost at process exit.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, MAX_COALESCED_LOG_CHARS, MAX_PENDING_LOG_BYTES } from '../src/log.js';
import { REPO_ROOT } from './helpers/repo.js';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const withoutTime = (text: string): string => text.replace(/time=\S+ /g, '');

describe('coalesced logger', () => {
  it('the lines of one turn leave in one write, in order, after the turn', async () => {
    const writes: string[] = [];
    const sink = { writableLength: 0, write: (text: string) => writes.push(text) };
    const log = createLogger('text', sink, { coalesce: true });
    log.info('server_claimed', { server_id: 'a', binary_version: '1', remote: '127.0.0.1' });
    log.info('phone_registered', {
      server_id: 'a',
      conn_id: 'client-a-00000001',
      device_name: '',
      remote: '127.0.0.1',
    });
    log.warn('rate_limited', { remote: '"127.0.0.1"' });
    expect(writes).toEqual([]);
    await nextTurn();
    expect(writes.map(withoutTime)).toEqual([
      'level=INFO msg=server_claimed server_id=a binary_version=1 remote=127.0.0.1\n' +
        'level=INFO msg=phone_registered server_id=a conn_id=client-a-00000001 device_name="" remote=127.0.0.1\n' +
        'level=WARN msg=rate_limited remote="\\"127.0.0.1\\""\n',
    ]);
    log.info('later');
    await nextTurn();
    expect(writes.map(withoutTime)).toHaveLength(2);
    expect(withoutTime(writes[1]!)).toBe('level=INFO msg=later\n');
  });

  it('the same lines as an uncoalesced logger, byte for byte (json)', async () => {
    const plain: string[] = [];
    const coalesced: string[] = [];
    const a = createLogger('json', { write: (t: string) => plain.push(t) });
    const b = createLogger('json', { write: (t: string) => coalesced.push(t) }, { coalesce: true });
    for (const log of [a, b]) {
      log.info('phone_registered', { server_id: 'ü', conn_id: 'c', device_name: 'Pixel "9"', remote: '::1' });
      log.error('e', { err: 'x\ny' });
    }
    await nextTurn();
    expect(coalesced.map(withoutJsonTime)).toEqual([plain.map(withoutJsonTime).join('')]);
  });

  it('the unwritten bound counts the batch: lines past it are dropped and reported', async () => {
    const writes: string[] = [];
    const sink = { writableLength: MAX_PENDING_LOG_BYTES - 60, write: (text: string) => writes.push(text) };
    const log = createLogger('text', sink, { coalesce: true });
    log.info('first_line_fits'); // about 55 characters: the batch now passes the bound
    log.info('dropped_one');
    log.info('dropped_two');
    expect(log.droppedLines).toBe(2);
    await nextTurn();
    sink.writableLength = 0;
    log.info('after');
    await nextTurn();
    expect(writes.map(withoutTime)).toEqual([
      'level=INFO msg=first_line_fits\n',
      'level=WARN msg=log_dropped count=2\nlevel=INFO msg=after\n',
    ]);
  });

  it('a turn that logs more than MAX_COALESCED_LOG_CHARS writes as it goes and drops nothing', async () => {
    const writes: string[] = [];
    // A file sink: no writableLength (process.stderr on a file is written synchronously).
    const log = createLogger('text', { write: (text: string) => writes.push(text) }, { coalesce: true });
    const lines = 20_000; // about 2.6 MB of lines in one turn, more than MAX_PENDING_LOG_BYTES
    for (let i = 0; i < lines; i++) {
      log.info('phone_unregistered', { server_id: 'burst', conn_id: `client-burst-${i}`, remote: '127.0.0.1' });
    }
    expect(writes.length).toBeGreaterThan(1);
    for (const w of writes) expect(w.length).toBeLessThan(MAX_COALESCED_LOG_CHARS + 200);
    await nextTurn();
    const all = writes
      .join('')
      .split('\n')
      .filter((l) => l !== '');
    expect(all).toHaveLength(lines);
    expect(log.droppedLines).toBe(0);
    expect(all.every((l, i) => l.endsWith(`conn_id=client-burst-${i} remote=127.0.0.1`))).toBe(true);
  });

  it('lines of the last turn are written when the process exits', () => {
    const script = `
      const { createLogger } = await import(${JSON.stringify(join(REPO_ROOT, 'dist/src/log.js'))});
      const log = createLogger('text', process.stderr, { coalesce: true });
      log.error('refused_before_exit', { reason: 'test' });
      log.info('second_line');
      process.exit(2);
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(child.status).toBe(2);
    expect(withoutTime(child.stderr)).toBe(
      'level=ERROR msg=refused_before_exit reason=test\nlevel=INFO msg=second_line\n',
    );
  });
});

function withoutJsonTime(text: string): string {
  return text.replace(/"time":"[^"]*",/g, '');
}
