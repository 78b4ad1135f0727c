// Structural pieces of src/http/listeners.ts: the listener port allowlist
// (docs/decisions.md, "The listener port allowlist is structural") and the Host parsing behind the autocert mode's
// 421 (2.1; end to end in autocert.test.ts).

import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { checkListenerPorts, missingHost, requestHost } from '../../src/http/listeners.js';

describe('listener port allowlist', () => {
  it.each<[string, number[], number[]]>([
    ['insecure + metrics', [8080, 9090], [8080, 9090]],
    ['autocert + metrics', [443, 80, 9090], [80, 443, 9090]],
    ['autocert, metrics off', [8443, 8080], [8080, 8443]],
    ['the same port twice (a bind collision, caught at bind time, not here)', [9090, 9090], [9090, 9090]],
    ['binding fewer than expected', [443, 80, 9090], [443]],
  ])('accepts %s', (_name, expected, actual) => {
    expect(checkListenerPorts(expected, actual)).toBeNull();
  });

  it.each<[string, number[], number[], number[], number[]]>([
    ['a debug port', [443, 80, 9090], [443, 80, 9090, 6060], [6060], [80, 443, 9090]],
    ['several surplus ports, sorted and deduplicated', [8080], [9999, 8080, 1234, 9999], [1234, 9999], [8080]],
    ['metrics bound while disabled', [443, 80], [443, 80, 9090], [9090], [80, 443]],
    ['nothing expected', [], [80], [80], []],
  ])('refuses %s', (_name, expected, actual, unexpected, sortedExpected) => {
    expect(checkListenerPorts(expected, actual)).toEqual({ unexpected, expected: sortedExpected });
  });
});

describe('requestHost', () => {
  const req = (host: string | undefined): IncomingMessage =>
    ({ headers: host === undefined ? {} : { host } }) as IncomingMessage;
  it.each<[string | undefined, string]>([
    ['relay.example.com', 'relay.example.com'],
    ['relay.example.com:443', 'relay.example.com'],
    ['Relay.Example.COM:8443', 'relay.example.com'],
    ['relay.example.com.', 'relay.example.com.'],
    ['[::1]:443', '[::1]'],
    ['[::1]', '[::1]'],
    ['', ''],
    [undefined, ''],
  ])('%j -> %j', (host, expected) => {
    expect(requestHost(req(host))).toBe(expected);
  });
});

describe('missingHost', () => {
  const req = (major: number, minor: number, host?: string): IncomingMessage =>
    ({
      httpVersionMajor: major,
      httpVersionMinor: minor,
      headers: host === undefined ? {} : { host },
    }) as IncomingMessage;
  it('only an HTTP/1.1 (or later 1.x) request without any Host header', () => {
    expect(missingHost(req(1, 1))).toBe(true);
    expect(missingHost(req(1, 1, ''))).toBe(false); // present but empty: the Host check's business (421)
    expect(missingHost(req(1, 1, 'relay.example.com'))).toBe(false);
    expect(missingHost(req(1, 0))).toBe(false);
  });
});
