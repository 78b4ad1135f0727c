// The build version: package.json's version, found next to the running module; 'dev' if absent.

import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const relative of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'pyrycode-relay' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Not here; try the next candidate.
    }
  }
  return 'dev';
}

export const VERSION: string = readVersion();
