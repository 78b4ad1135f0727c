// The ACME certificate cache directory (docs/operations.md, "Autocert (`--domain`)").
//
// The directory holds the ACME account key and the certificate's private key, so it must be
// private to the relay's user:
// * missing -> created (with missing parents) mode 0700;
// * exists but is not a directory -> error;
// * has any group/other permission bit: owned by our effective uid -> chmod 0700 and log
//   `tightened cert cache dir perms` {path, from, to}; a failing chmod is its own error;
//   owned by someone else, or ownership unknown (no POSIX uids, e.g. Windows) -> refuse.
// Files in it are written 0600 through a temporary file and a rename, so a crash never leaves a
// half-written key or certificate under the real name.
//
// A CertCacheError's message is safe to log: it names the rule and an errno code, never file
// contents.

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';

export const CERT_CACHE_DIR_MODE = 0o700;
export const CERT_CACHE_FILE_MODE = 0o600;
export const INSECURE_PERMISSIONS_MESSAGE = 'cert cache dir has insecure permissions (must be 0700)';
export const NOT_A_DIRECTORY_MESSAGE = 'cert cache path exists but is not a directory';

export class CertCacheError extends Error {
  override name = 'CertCacheError';
}

export interface CertCacheFacts {
  /** The process's effective uid; null when the platform has none (ownership unknown). */
  euid: number | null;
}

export function processFacts(): CertCacheFacts {
  return { euid: typeof process.geteuid === 'function' ? process.geteuid() : null };
}

/** "0755" style, as the log line's `from`/`to`. */
export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/**
 * Applies the cache directory rules to `dir`. Resolves when the directory exists, is a directory
 * and has no group/other bits; rejects with a CertCacheError otherwise.
 */
export async function prepareCertCache(
  dir: string,
  log: Logger,
  facts: CertCacheFacts = processFacts(),
): Promise<void> {
  if (dir === '') throw new CertCacheError('cert cache path is empty');
  let st: Stats;
  try {
    st = await stat(dir);
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw new CertCacheError(`cannot stat cert cache dir: ${errCode(err)}`);
    try {
      await mkdir(dir, { recursive: true, mode: CERT_CACHE_DIR_MODE });
      // The umask may have taken bits away (never added any); set exactly 0700.
      await chmod(dir, CERT_CACHE_DIR_MODE);
    } catch (e) {
      throw new CertCacheError(`cannot create cert cache dir: ${errCode(e)}`);
    }
    return;
  }
  if (!st.isDirectory()) throw new CertCacheError(NOT_A_DIRECTORY_MESSAGE);
  if ((st.mode & 0o077) === 0) return;
  if (facts.euid === null || st.uid !== facts.euid) throw new CertCacheError(INSECURE_PERMISSIONS_MESSAGE);
  try {
    await chmod(dir, CERT_CACHE_DIR_MODE);
  } catch (err) {
    throw new CertCacheError(`cannot tighten cert cache dir permissions: ${errCode(err)}`);
  }
  log.info('tightened cert cache dir perms', {
    path: dir,
    from: formatMode(st.mode),
    to: formatMode(CERT_CACHE_DIR_MODE),
  });
}

const FILE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** Files inside a prepared cache directory. Names are plain file names (no separators). */
export class CertCache {
  constructor(readonly dir: string) {}

  private path(name: string): string {
    if (!FILE_NAME_RE.test(name)) throw new CertCacheError('invalid cert cache file name');
    return join(this.dir, name);
  }

  /** The file's bytes, or null if it does not exist. Other read errors reject. */
  async read(name: string): Promise<Buffer | null> {
    const path = this.path(name);
    try {
      return await readFile(path);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return null;
      throw new CertCacheError(`cannot read cert cache file: ${errCode(err)}`);
    }
  }

  /** Writes the file with mode 0600: a new temporary file, then a rename over the old one. */
  async write(name: string, data: string | Buffer): Promise<void> {
    const target = this.path(name);
    const tmp = join(this.dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await writeFile(tmp, data, { mode: CERT_CACHE_FILE_MODE, flag: 'wx' });
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw new CertCacheError(`cannot write cert cache file: ${errCode(err)}`);
    }
  }
}

function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'unknown error';
}
