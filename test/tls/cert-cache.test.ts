// The cert cache directory rules (docs/operations.md, "Autocert (`--domain`)") on a real file system, and the cache's
// file writes (0600, via a temporary file and a rename). Ownership by another user is simulated
// by passing a different effective uid (the daemon-level refusal with a real foreign owner is in
// autocert.test.ts).

import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CertCache,
  CertCacheError,
  formatMode,
  INSECURE_PERMISSIONS_MESSAGE,
  NOT_A_DIRECTORY_MESSAGE,
  prepareCertCache,
  processFacts,
} from '../../src/tls/cert-cache.js';
import { createLogger } from '../../src/log.js';
import type { LogLine } from '../helpers/relay.js';

let work: string;
let logs: LogLine[];
const log = createLogger('json', { write: (line: string) => logs.push(JSON.parse(line) as LogLine) });
const me = processFacts();
const uid = me.euid ?? 0;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'cert-cache-'));
  logs = [];
});
afterEach(() => {
  rmSync(work, { recursive: true, force: true });
});

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

describe('prepareCertCache', () => {
  it('a missing directory (and its missing parents) is created 0700, whatever the umask', async () => {
    const dir = join(work, 'a', 'b', 'certs');
    const old = process.umask(0o277); // would drop the owner's write bit
    try {
      await prepareCertCache(dir, log, me);
    } finally {
      process.umask(old);
    }
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(mode(dir)).toBe(0o700);
    expect(logs).toEqual([]);
  });

  it('an existing 0700 directory is left alone, without a log line', async () => {
    const dir = join(work, 'certs');
    mkdirSync(dir);
    chmodSync(dir, 0o700);
    await prepareCertCache(dir, log, me);
    expect(mode(dir)).toBe(0o700);
    expect(logs).toEqual([]);
  });

  it.each([0o755, 0o770, 0o701, 0o777, 0o2750])(
    'our own directory with mode %o is tightened to 0700 and logged',
    async (m) => {
      const dir = join(work, 'certs');
      mkdirSync(dir);
      chmodSync(dir, m);
      await prepareCertCache(dir, log, me);
      expect(mode(dir)).toBe(0o700);
      expect(logs).toEqual([
        {
          time: expect.any(String),
          level: 'INFO',
          msg: 'tightened cert cache dir perms',
          path: dir,
          from: formatMode(m),
          to: '0700',
        },
      ]);
    },
  );

  it('another owner with group/other bits: refused, directory untouched', async () => {
    const dir = join(work, 'certs');
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    await expect(prepareCertCache(dir, log, { euid: uid + 1 })).rejects.toThrow(
      new CertCacheError(INSECURE_PERMISSIONS_MESSAGE),
    );
    expect(mode(dir)).toBe(0o755);
    expect(logs).toEqual([]);
  });

  it('ownership unknown (no POSIX uids) with group/other bits: refused; 0700 is accepted', async () => {
    const dir = join(work, 'certs');
    mkdirSync(dir);
    chmodSync(dir, 0o750);
    await expect(prepareCertCache(dir, log, { euid: null })).rejects.toThrow(INSECURE_PERMISSIONS_MESSAGE);
    chmodSync(dir, 0o700);
    await expect(prepareCertCache(dir, log, { euid: null })).resolves.toBeUndefined();
  });

  it('another owner with a private (0700) directory is accepted', async () => {
    const dir = join(work, 'certs');
    mkdirSync(dir);
    chmodSync(dir, 0o700);
    await expect(prepareCertCache(dir, log, { euid: uid + 1 })).resolves.toBeUndefined();
  });

  it('a path that is a file: "not a directory"', async () => {
    const file = join(work, 'file');
    writeFileSync(file, 'x');
    await expect(prepareCertCache(file, log, me)).rejects.toThrow(new CertCacheError(NOT_A_DIRECTORY_MESSAGE));
  });

  it('a path below a file cannot be examined: the errno code, nothing else', async () => {
    const file = join(work, 'file');
    writeFileSync(file, 'x');
    await expect(prepareCertCache(join(file, 'certs'), log, me)).rejects.toThrow('cannot stat cert cache dir: ENOTDIR');
  });

  it('an empty path is refused', async () => {
    await expect(prepareCertCache('', log, me)).rejects.toThrow('cert cache path is empty');
  });

  it('formatMode', () => {
    expect(formatMode(0o40755)).toBe('0755');
    expect(formatMode(0o700)).toBe('0700');
    expect(formatMode(0o2750)).toBe('2750');
  });
});

describe('CertCache files', () => {
  it('writes 0600 files through a temporary file, overwrites, reads back; missing -> null', async () => {
    const cache = new CertCache(work);
    expect(await cache.read('relay.example.com+abc.crt')).toBeNull();
    const old = process.umask(0);
    try {
      await cache.write('relay.example.com+abc.crt', 'first');
      await cache.write('relay.example.com+abc.crt', Buffer.from('second'));
    } finally {
      process.umask(old);
    }
    expect((await cache.read('relay.example.com+abc.crt'))?.toString()).toBe('second');
    expect(mode(join(work, 'relay.example.com+abc.crt'))).toBe(0o600);
    expect(readdirSync(work)).toEqual(['relay.example.com+abc.crt']);
  });

  it.each(['', '../x', 'a/b', '.hidden', '-x'])('refuses the file name %j', async (name) => {
    const cache = new CertCache(work);
    await expect(cache.write(name, 'x')).rejects.toThrow('invalid cert cache file name');
    await expect(cache.read(name)).rejects.toThrow('invalid cert cache file name');
  });

  it('a failed write leaves no temporary file behind', async () => {
    const cache = new CertCache(join(work, 'missing-dir'));
    await expect(cache.write('x.key', 'x')).rejects.toThrow('cannot write cert cache file: ENOENT');
    expect(readdirSync(work)).toEqual([]);
  });
});
