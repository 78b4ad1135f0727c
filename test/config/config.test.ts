import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { formatListenAddress, METRICS_LISTEN_FIX } from '../../src/config/addresses.js';
import { DEFAULT_FCM_TOKEN_URI } from '../../src/config/defaults.js';
import { parseConfig } from '../../src/config/parse.js';
import { FCM_REFUSAL_REASON } from '../../src/config/push-env.js';
import { REFUSAL_EVENTS } from '../../src/config/refusals.js';
import type { ParseOutcome, RelayConfig } from '../../src/config/types.js';
import { usage } from '../../src/config/usage.js';
import { LOG_KEYS, createLogger, type LogFields, type LogFormat } from '../../src/log.js';

type Refuse = Extract<ParseOutcome, { kind: 'refuse' }>;
type Env = Record<string, string | undefined>;

const HOME = '/home/relay';
const INSECURE = ['--insecure-listen', ':8080'];
const TLS = ['--tls-cert', '/etc/relay/cert.pem', '--tls-key', '/etc/relay/key.pem'];

/** Every refusal must log only allowlisted keys. */
function checkFieldKeys(fields: LogFields): void {
  for (const key of Object.keys(fields)) expect(LOG_KEYS.has(key), `field ${key} is not allowlisted`).toBe(true);
}

/** Parses with homeDir HOME, or with the given homeDir (which may be undefined). */
function run(argv: string[], env: Env = {}, ...home: [homeDir?: string | undefined]): RelayConfig {
  const out = home.length === 0 ? parseConfig(argv, env, HOME) : parseConfig(argv, env, home[0]);
  if (out.kind !== 'run') throw new Error(`expected run, got ${JSON.stringify(out)}`);
  return out.config;
}

function refuse(argv: string[], env: Env = {}): Refuse {
  const out = parseConfig(argv, env, HOME);
  if (out.kind !== 'refuse') throw new Error(`expected refuse, got ${JSON.stringify(out)}`);
  checkFieldKeys(out.fields);
  return out;
}

const DEFAULTS: RelayConfig = {
  mode: 'insecure',
  listen: { host: '', port: 8080 },
  tlsCertFile: null,
  tlsKeyFile: null,
  domain: '',
  certCache: '/home/relay/.pyrycode-relay/certs',
  acmeDirectory: 'https://acme-v02.api.letsencrypt.org/directory',
  httpsListen: { host: '', port: 443 },
  httpListen: { host: '', port: 80 },
  httpsProxyProtocol: false,
  metricsListen: { host: '127.0.0.1', port: 9090 },
  trustXForwardedFor: false,
  maxConnections: 20,
  gracePeriodMs: 30_000,
  heartbeatIntervalMs: 30_000,
  probeTimeoutMs: 10_000,
  maxPhonesPerServer: 16,
  rateLimitBurst: 20,
  rateLimitIntervalMs: 6_000,
  shutdownTimeoutMs: 10_000,
  drainDelayMs: 0,
  metricsRuntime: false,
  logFormat: 'text',
  production: false,
  singleInstanceBypass: false,
  flyAppName: '',
  fcmCredentials: null,
  cluster: null,
};

describe('drain delay and runtime metrics flags', () => {
  it('--drain-delay accepts 0 and positive durations, refuses negatives and junk', () => {
    expect(run([...INSECURE, '--drain-delay', '0']).drainDelayMs).toBe(0);
    expect(run([...INSECURE, '--drain-delay=0s']).drainDelayMs).toBe(0);
    expect(run([...INSECURE, '--drain-delay', '5s']).drainDelayMs).toBe(5_000);
    expect(refuse([...INSECURE, '--drain-delay', '-1s']).fields).toMatchObject({ flag: '--drain-delay', value: '-1s' });
    expect(refuse([...INSECURE, '--drain-delay', 'soon']).fields).toMatchObject({
      flag: '--drain-delay',
      value: 'soon',
    });
  });

  it('--metrics-runtime is a boolean', () => {
    expect(run([...INSECURE, '--metrics-runtime']).metricsRuntime).toBe(true);
    expect(run([...INSECURE, '--metrics-runtime=false']).metricsRuntime).toBe(false);
  });
});

describe('defaults', () => {
  it('insecure mode with only --insecure-listen', () => {
    expect(run(INSECURE)).toEqual(DEFAULTS);
  });

  it('static-TLS mode listens on --https-listen (default :443)', () => {
    expect(run(TLS)).toEqual({
      ...DEFAULTS,
      mode: 'tls',
      listen: { host: '', port: 443 },
      tlsCertFile: '/etc/relay/cert.pem',
      tlsKeyFile: '/etc/relay/key.pem',
    });
  });

  it.each<[string, string | undefined, Env, string]>([
    ['home directory given', '/home/x', {}, '/home/x/.pyrycode-relay/certs'],
    ['empty home directory', '', { HOME: '/ignored' }, '.pyrycode-relay/certs'],
    ['no homeDir: falls back to env.HOME', undefined, { HOME: '/h' }, '/h/.pyrycode-relay/certs'],
    ['no homeDir and no HOME: relative', undefined, {}, '.pyrycode-relay/certs'],
    ['no homeDir and empty HOME: relative', undefined, { HOME: '' }, '.pyrycode-relay/certs'],
  ])('cert cache: %s', (_name, home, env, expected) => {
    expect(run(INSECURE, env, home).certCache).toBe(expected);
  });

  it('--cert-cache overrides the home default', () => {
    expect(run([...INSECURE, '--cert-cache', '/var/lib/relay/autocert']).certCache).toBe('/var/lib/relay/autocert');
  });
});

describe('flag forms', () => {
  // [flag, value, base argv, config key, expected]
  const rows: Array<[string, string, string[], keyof RelayConfig, unknown]> = [
    ['insecure-listen', '127.0.0.1:9000', [], 'listen', { host: '127.0.0.1', port: 9000 }],
    ['tls-cert', '/c.pem', ['--tls-key', '/k.pem'], 'tlsCertFile', '/c.pem'],
    ['tls-key', '/k.pem', ['--tls-cert', '/c.pem'], 'tlsKeyFile', '/k.pem'],
    ['cert-cache', '/tmp/cc', INSECURE, 'certCache', '/tmp/cc'],
    ['https-listen', '[::1]:8443', TLS, 'listen', { host: '::1', port: 8443 }],
    ['https-listen', '0.0.0.0:8443', TLS, 'httpsListen', { host: '0.0.0.0', port: 8443 }],
    ['metrics-listen', '127.0.0.2:9100', INSECURE, 'metricsListen', { host: '127.0.0.2', port: 9100 }],
    ['max-connections', '500', INSECURE, 'maxConnections', 500],
    ['grace-period', '1m30s', INSECURE, 'gracePeriodMs', 90_000],
    ['heartbeat-interval', '250ms', INSECURE, 'heartbeatIntervalMs', 250],
    ['probe-timeout', '1.5s', INSECURE, 'probeTimeoutMs', 1_500],
    ['max-phones-per-server', '3', INSECURE, 'maxPhonesPerServer', 3],
    ['rate-limit-burst', '7', INSECURE, 'rateLimitBurst', 7],
    ['rate-limit-interval', '1h', INSECURE, 'rateLimitIntervalMs', 3_600_000],
    ['shutdown-timeout', '2s', INSECURE, 'shutdownTimeoutMs', 2_000],
    ['log-format', 'json', INSECURE, 'logFormat', 'json'],
  ];
  const forms: Array<[string, (f: string, v: string) => string[]]> = [
    ['--x=v', (f, v) => [`--${f}=${v}`]],
    ['--x v', (f, v) => [`--${f}`, v]],
    ['-x v', (f, v) => [`-${f}`, v]],
    ['-x=v', (f, v) => [`-${f}=${v}`]],
  ];
  for (const [formName, form] of forms) {
    it.each(rows)(`${formName}: --%s %s`, (flag, value, base, key, expected) => {
      expect(run([...base, ...form(flag, value)])[key]).toEqual(expected);
      // Flag order does not matter.
      expect(run([...form(flag, value), ...base])[key]).toEqual(expected);
    });
  }

  it('a value may start with "-" when given as the next argument (Go semantics)', () => {
    expect(run([...INSECURE, '--cert-cache', '-dir']).certCache).toBe('-dir');
    // ...so a missing value swallows the next flag: here --max-connections becomes the address.
    expect(refuse(['--insecure-listen', '--max-connections', '5'])).toMatchObject({
      event: REFUSAL_EVENTS.commandLine,
      fields: { err: expect.stringContaining('unexpected argument "5"') },
    });
    expect(refuse(['--insecure-listen', '--max-connections'])).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.invalidListenerAddress,
      fields: { flag: '--insecure-listen', value: '--max-connections', reason: 'missing port in address' },
      logFormat: 'text',
    });
  });

  it('an "=" in the value is kept', () => {
    expect(run([...INSECURE, '--cert-cache=/a=b']).certCache).toBe('/a=b');
  });

  it('a repeated flag: the last one wins', () => {
    const c = run([...INSECURE, '--max-connections=5', '--max-connections', '7', '--insecure-listen', ':9000']);
    expect(c.maxConnections).toBe(7);
    expect(c.listen).toEqual({ host: '', port: 9000 });
  });

  it('"--" ends the flags', () => {
    expect(run([...INSECURE, '--'])).toEqual(DEFAULTS);
  });
});

describe('boolean flags', () => {
  it.each<[string[], boolean]>([
    [[], false],
    [['--trust-x-forwarded-for'], true],
    [['-trust-x-forwarded-for'], true],
    [['--trust-x-forwarded-for=true'], true],
    [['--trust-x-forwarded-for=false'], false],
    [['--trust-x-forwarded-for=1'], true],
    [['--trust-x-forwarded-for=0'], false],
    [['--trust-x-forwarded-for=T'], true],
    [['--trust-x-forwarded-for=FALSE'], false],
    [['--trust-x-forwarded-for=False'], false],
    [['--trust-x-forwarded-for', '--trust-x-forwarded-for=false'], false],
    [['--trust-x-forwarded-for=false', '--trust-x-forwarded-for'], true],
  ])('%j → %s', (args, expected) => {
    expect(run([...INSECURE, ...args]).trustXForwardedFor).toBe(expected);
  });

  it('a separate "false" does not set a boolean: it is a positional argument', () => {
    expect(refuse([...INSECURE, '--trust-x-forwarded-for', 'false'])).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.commandLine,
      fields: {
        err: 'unexpected argument "false": this command takes flags only, and flag parsing stops at the first non-flag argument',
        fix: 'run with --help for the list of flags',
      },
      logFormat: 'text',
    });
  });

  it.each(['maybe', '', 'yes', 'TrUe'])('--trust-x-forwarded-for=%j is a syntax error', (v) => {
    expect(refuse([...INSECURE, `--trust-x-forwarded-for=${v}`]).fields).toEqual({
      err: `invalid boolean value ${JSON.stringify(v)} for -trust-x-forwarded-for: parse error`,
      fix: 'run with --help for the list of flags',
    });
  });

  it('--https-proxy-protocol is parsed as a boolean too (then refused outside --domain)', () => {
    expect(refuse([...INSECURE, '--https-proxy-protocol=nope']).event).toBe(REFUSAL_EVENTS.commandLine);
  });
});

describe('command-line syntax refusals', () => {
  it.each<[string[], string]>([
    [['--bogus'], 'flag provided but not defined: -bogus'],
    [[...INSECURE, '-bogus=1'], 'flag provided but not defined: -bogus'],
    [[...INSECURE, '--Insecure-Listen=:1'], 'flag provided but not defined: -Insecure-Listen'],
    [[...INSECURE, '--max-connections'], 'flag needs an argument: -max-connections'],
    [['--insecure-listen'], 'flag needs an argument: -insecure-listen'],
    [['---insecure-listen=:1'], 'bad flag syntax: ---insecure-listen=:1'],
    [['--=x'], 'bad flag syntax: --=x'],
    [['-=x'], 'bad flag syntax: -=x'],
    [
      ['serve', ...INSECURE],
      'unexpected argument "serve": this command takes flags only, and flag parsing stops at the first non-flag argument',
    ],
    [
      [...INSECURE, '-'],
      'unexpected argument "-": this command takes flags only, and flag parsing stops at the first non-flag argument',
    ],
    [
      [...INSECURE, '--', '--max-connections=5'],
      'unexpected argument "--max-connections=5": this command takes flags only, and flag parsing stops at the first non-flag argument',
    ],
    [
      ['--version', 'extra'],
      'unexpected argument "extra": this command takes flags only, and flag parsing stops at the first non-flag argument',
    ],
    [['--version', '--bogus'], 'flag provided but not defined: -bogus'],
  ])('%j → %s', (argv, err) => {
    expect(refuse(argv)).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.commandLine,
      fields: { err, fix: 'run with --help for the list of flags' },
      logFormat: 'text',
    });
  });
});

describe('help and version', () => {
  it.each([
    ['-h'],
    ['--h'],
    ['-help'],
    ['--help'],
    ['--help=1'],
    ['-h', '--bogus'],
    [...INSECURE, '--help', 'positional'],
  ])('%j → help', (...argv) => {
    const out = parseConfig(argv, {}, HOME);
    expect(out).toEqual({ kind: 'help', text: usage() });
  });

  it('an error before -h wins (Go stops at the first error)', () => {
    expect(refuse(['--bogus', '-h']).fields.err).toBe('flag provided but not defined: -bogus');
  });

  it.each([
    ['--version'],
    ['-version'],
    ['--version=true'],
    ['--version', '--max-connections=0'],
    ['--version', '--domain', 'x', ...INSECURE],
  ])('%j → version (before any other validation)', (...argv) => {
    expect(parseConfig(argv, { PYRYCODE_RELAY_PRODUCTION: 'garbage', FLY_APP_NAME: 'x' }, HOME)).toEqual({
      kind: 'version',
    });
  });

  it('--version=false runs', () => {
    expect(run(['--version=false', ...INSECURE])).toEqual(DEFAULTS);
  });

  it('usage lists every flag with its default and meaning', () => {
    const text = usage();
    const expectations: Array<[string, string]> = [
      ['--insecure-listen ADDR', '(default "")'],
      ['--tls-cert FILE', '(default "")'],
      ['--tls-key FILE', '(default "")'],
      ['--domain D', '(default "")'],
      ['--cert-cache DIR', '(default $HOME/.pyrycode-relay/certs)'],
      ['--https-listen ADDR', '(default ":443")'],
      ['--http-listen ADDR', '(default ":80")'],
      ['--https-proxy-protocol', '(default false)'],
      ['--metrics-listen ADDR', '(default "127.0.0.1:9090")'],
      ['--trust-x-forwarded-for', '(default false)'],
      ['--max-connections N', '(default 20)'],
      ['--grace-period DUR', '(default 30s)'],
      ['--heartbeat-interval DUR', '(default 30s)'],
      ['--probe-timeout DUR', '(default 10s)'],
      ['--max-phones-per-server N', '(default 16)'],
      ['--rate-limit-burst N', '(default 20)'],
      ['--rate-limit-interval DUR', '(default 6s)'],
      ['--shutdown-timeout DUR', '(default 10s)'],
      ['--log-format text|json', '(default "text")'],
      ['--version', 'print the version'],
      ['--help', 'print this help'],
    ];
    for (const [flag, tail] of expectations) {
      const line = text.split('\n').find((l) => l.startsWith(`  ${flag} `) || l.startsWith(`  -h, ${flag} `));
      expect(line, flag).toBeDefined();
      expect(line, flag).toContain(tail);
    }
    for (const env of [
      'PYRYCODE_RELAY_PRODUCTION=1 ',
      'PYRYCODE_RELAY_SINGLE_INSTANCE=1 ',
      'PYRYCODE_RELAY_FCM_CREDENTIALS ',
    ]) {
      expect(text).toContain(`  ${env}`);
    }
    expect(text.endsWith('\n')).toBe(true);
  });
});

describe('refusal log format', () => {
  it.each<[string[], LogFormat]>([
    [['--log-format', 'json'], 'json'],
    [['--log-format=json', '--max-connections=0', ...INSECURE], 'json'],
    [['--log-format', 'yaml'], 'text'],
    [['--log-format', 'json', '--log-format', 'text'], 'text'],
    [['--log-format', 'json', '--bogus'], 'json'],
    [['--bogus', '--log-format', 'json'], 'text'],
    [[], 'text'],
  ])('%j → %s', (argv, format) => {
    expect(refuse(argv).logFormat).toBe(format);
  });
});

describe('listener mode and conflicting flags', () => {
  const conflicting = (reason: string): LogFields => ({ reason });
  it.each<[string, string[], string, LogFields]>([
    [
      'no mode',
      [],
      REFUSAL_EVENTS.noMode,
      { reason: 'one of --insecure-listen, --tls-cert with --tls-key, or --domain is required' },
    ],
    [
      'no mode (other flags only)',
      ['--max-connections', '5', '--https-listen', ':8443'],
      REFUSAL_EVENTS.noMode,
      { reason: 'one of --insecure-listen, --tls-cert with --tls-key, or --domain is required' },
    ],
    [
      'metrics on the public address',
      ['--insecure-listen', '127.0.0.1:8080', '--metrics-listen', '127.0.0.1:8080'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--insecure-listen and --metrics-listen name the same port (8080)'),
    ],
    [
      'the default metrics address inside the public wildcard listener',
      ['--insecure-listen', ':9090'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--insecure-listen and --metrics-listen name the same port (9090)'),
    ],
    [
      'autocert: HTTP-01 on the HTTPS port',
      ['--domain', 'relay.example.com', '--https-listen', ':8443', '--http-listen', ':8443'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--https-listen and --http-listen name the same port (8443)'),
    ],
    [
      'insecure + domain',
      [...INSECURE, '--domain', 'relay.example.com'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--insecure-listen and --domain are mutually exclusive (choose one listener mode)'),
    ],
    [
      'insecure + tls',
      [...INSECURE, ...TLS],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--insecure-listen and --tls-cert are mutually exclusive (choose one listener mode)'),
    ],
    [
      'insecure + tls-key only',
      [...INSECURE, '--tls-key', 'k'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--insecure-listen and --tls-key are mutually exclusive (choose one listener mode)'),
    ],
    [
      'tls + domain',
      [...TLS, '--domain', 'relay.example.com'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--tls-cert and --domain are mutually exclusive (choose one listener mode)'),
    ],
    [
      'all three',
      [...TLS, '--domain', 'd', ...INSECURE],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--insecure-listen and --tls-cert are mutually exclusive (choose one listener mode)'),
    ],
    [
      'tls-cert without tls-key',
      ['--tls-cert', 'c'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--tls-cert requires --tls-key'),
    ],
    [
      'tls-key without tls-cert',
      ['--tls-key', 'k'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--tls-key requires --tls-cert'),
    ],
    [
      'insecure + --https-listen (default value)',
      [...INSECURE, '--https-listen', ':443'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--https-listen cannot be used with --insecure-listen (it applies only to TLS modes)'),
    ],
    [
      'insecure + --http-listen (default value)',
      [...INSECURE, '--http-listen=:80'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--http-listen cannot be used with --insecure-listen (it applies only to TLS modes)'),
    ],
    [
      'insecure + --https-proxy-protocol',
      [...INSECURE, '--https-proxy-protocol'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--https-proxy-protocol cannot be used with --insecure-listen (it applies only to TLS modes)'),
    ],
    [
      'insecure + --https-proxy-protocol=false',
      [...INSECURE, '--https-proxy-protocol=false'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--https-proxy-protocol cannot be used with --insecure-listen (it applies only to TLS modes)'),
    ],
    [
      'tls + --http-listen',
      [...TLS, '--http-listen', ':8080'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--http-listen applies only to --domain (autocert mode), not to --tls-cert/--tls-key'),
    ],
    [
      'tls + --https-proxy-protocol',
      [...TLS, '--https-proxy-protocol'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--https-proxy-protocol applies only to --domain (autocert mode), not to --tls-cert/--tls-key'),
    ],
    [
      'tls + --https-proxy-protocol=false',
      [...TLS, '--https-proxy-protocol=false'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--https-proxy-protocol applies only to --domain (autocert mode), not to --tls-cert/--tls-key'),
    ],
    [
      'insecure + --acme-directory',
      [...INSECURE, '--acme-directory', 'https://ca.example/dir'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--acme-directory cannot be used with --insecure-listen (it applies only to TLS modes)'),
    ],
    [
      'tls + --acme-directory',
      [...TLS, '--acme-directory', 'https://ca.example/dir'],
      REFUSAL_EVENTS.conflictingFlags,
      conflicting('--acme-directory applies only to --domain (autocert mode), not to --tls-cert/--tls-key'),
    ],
  ])('%s', (_name, argv, event, fields) => {
    expect(refuse(argv)).toEqual({ kind: 'refuse', event, fields, logFormat: 'text' });
  });

  it('--domain alone: autocert mode with the default listeners, cache and ACME directory', () => {
    expect(run(['--domain', 'relay.example.com'])).toEqual({
      ...DEFAULTS,
      mode: 'autocert',
      listen: { host: '', port: 443 },
      domain: 'relay.example.com',
    });
  });

  it('the Fly production argv', () => {
    const c = run([
      '--domain',
      'pyrycode-relay.pyryco.de',
      '--cert-cache',
      '/var/lib/relay/autocert',
      '--http-listen=:8080',
      '--https-listen=:8443',
      '--https-proxy-protocol',
    ]);
    expect(c).toMatchObject({
      mode: 'autocert',
      domain: 'pyrycode-relay.pyryco.de',
      certCache: '/var/lib/relay/autocert',
      httpListen: { host: '', port: 8080 },
      httpsListen: { host: '', port: 8443 },
      listen: { host: '', port: 8443 },
      httpsProxyProtocol: true,
    });
  });

  it('--domain is lowercased without a trailing dot; --acme-directory is taken as given', () => {
    const c = run(['--domain', 'Relay.Example.COM.', '--acme-directory', 'https://127.0.0.1:14000/dir']);
    expect(c.domain).toBe('relay.example.com');
    expect(c.acmeDirectory).toBe('https://127.0.0.1:14000/dir');
    expect(run(['--domain', 'localhost']).domain).toBe('localhost');
  });

  const badDomain = (value: string, reason: string): LogFields => ({
    flag: '--domain',
    value,
    reason,
    fix: 'pass the public DNS name the certificate is for, e.g. --domain=relay.example.com',
  });
  // A refused directory URL is never echoed: it may carry a password or a token.
  const badDirectory = (_value: string): LogFields => ({
    flag: '--acme-directory',
    value: '(withheld)',
    reason: 'not an absolute https:// URL without user info or fragment',
    fix: "pass the CA's ACME directory URL, e.g. --acme-directory=https://acme-v02.api.letsencrypt.org/directory",
  });
  it.each<[string, string[], LogFields]>([
    ['--domain=""', ['--domain='], badDomain('', 'must not be empty')],
    ['an IPv4 address', ['--domain', '203.0.113.1'], badDomain('203.0.113.1', 'must be a DNS name, not an IP address')],
    ['an IPv6 address', ['--domain', '::1'], badDomain('::1', 'must be a DNS name, not an IP address')],
    [
      'a wildcard',
      ['--domain', '*.example.com'],
      badDomain('*.example.com', 'wildcard names are not supported (HTTP-01 and TLS-ALPN-01 cannot validate them)'),
    ],
    ['a port', ['--domain', 'relay.example.com:443'], badDomain('relay.example.com:443', 'not a valid DNS name')],
    ['an underscore', ['--domain', 'my_relay.example.com'], badDomain('my_relay.example.com', 'not a valid DNS name')],
    [
      'all-digit last label',
      ['--domain', 'relay.123'],
      badDomain('relay.123', 'the last label must not be all digits'),
    ],
    [
      'http:// directory',
      ['--domain', 'd.example', '--acme-directory', 'http://ca.example/dir'],
      badDirectory('http://ca.example/dir'),
    ],
    ['relative directory', ['--domain', 'd.example', '--acme-directory', '/dir'], badDirectory('/dir')],
    ['empty directory', ['--domain', 'd.example', '--acme-directory='], badDirectory('')],
    [
      'directory with user info',
      ['--domain', 'd.example', '--acme-directory', 'https://u:p@ca.example/dir'],
      badDirectory('https://u:p@ca.example/dir'),
    ],
    [
      'directory with a fragment',
      ['--domain', 'd.example', '--acme-directory', 'https://ca.example/dir#S3CRET'],
      badDirectory('https://ca.example/dir#S3CRET'),
    ],
    [
      '--cert-cache=""',
      ['--domain', 'd.example', '--cert-cache='],
      {
        flag: '--cert-cache',
        value: '',
        reason: 'must not be empty',
        fix: 'pass a directory for the ACME account and certificate, e.g. --cert-cache=/var/lib/relay/autocert',
      },
    ],
  ])('autocert flag values: %s', (_name, argv, fields) => {
    expect(refuse(argv)).toEqual({ kind: 'refuse', event: REFUSAL_EVENTS.invalidFlagValue, fields, logFormat: 'text' });
  });

  it('--domain with an invalid value elsewhere: the mode is accepted, the other value refused', () => {
    expect(refuse(['--domain', 'd.example', '--max-connections', '0']).fields).toMatchObject({
      flag: '--max-connections',
    });
  });

  it('--insecure-listen with --cert-cache is accepted (not a listener flag)', () => {
    expect(run([...INSECURE, '--cert-cache', '/x']).mode).toBe('insecure');
  });

  it('the mode check precedes value checks', () => {
    expect(refuse(['--max-connections', '0']).event).toBe(REFUSAL_EVENTS.noMode);
    expect(refuse([...INSECURE, '--https-listen', ':0', '--grace-period', 'x']).event).toBe(
      REFUSAL_EVENTS.conflictingFlags,
    );
  });
});

describe('invalid flag values', () => {
  const intFix = (flag: string, def: string): string => `pass a positive decimal integer, e.g. --${flag}=${def}`;
  const durFix = (flag: string, def: string): string => `pass a Go duration from 1ms to 24h, e.g. --${flag}=${def}`;

  const intFlags: Array<[string, string]> = [
    ['max-connections', '20'],
    ['max-phones-per-server', '16'],
    ['rate-limit-burst', '20'],
  ];
  const badInts: Array<[string, string]> = [
    ['0', 'must be greater than zero'],
    ['-1', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['+5', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['1e3', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['0x14', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    [' 5', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['5 ', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['5.0', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['abc', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['\uff15', 'not a decimal integer (digits only, no sign, exponent or spaces)'],
    ['020', 'leading zeros are not allowed (Go would read the value as octal)'],
    ['2147483648', 'must be at most 2147483647'],
    ['99999999999999999999999', 'must be at most 2147483647'],
  ];
  for (const [flag, def] of intFlags) {
    it.each(badInts)(`--${flag}=%j → %s`, (value, reason) => {
      expect(refuse([...INSECURE, `--${flag}=${value}`])).toEqual({
        kind: 'refuse',
        event: REFUSAL_EVENTS.invalidFlagValue,
        fields: { flag: `--${flag}`, value, reason, fix: intFix(flag, def) },
        logFormat: 'text',
      });
    });
    it(`--${flag} accepts 1 and 2147483647`, () => {
      const key = (
        {
          'max-connections': 'maxConnections',
          'max-phones-per-server': 'maxPhonesPerServer',
          'rate-limit-burst': 'rateLimitBurst',
        } as const
      )[flag as 'max-connections'];
      expect(run([...INSECURE, `--${flag}=1`])[key]).toBe(1);
      expect(run([...INSECURE, `--${flag}=2147483647`])[key]).toBe(2147483647);
    });
  }

  const durFlags: Array<[string, string, keyof RelayConfig]> = [
    ['grace-period', '30s', 'gracePeriodMs'],
    ['heartbeat-interval', '30s', 'heartbeatIntervalMs'],
    ['probe-timeout', '10s', 'probeTimeoutMs'],
    ['rate-limit-interval', '6s', 'rateLimitIntervalMs'],
    ['shutdown-timeout', '10s', 'shutdownTimeoutMs'],
  ];
  const badDurations: Array<[string, string]> = [
    ['0', 'must be greater than zero'],
    ['0s', 'must be greater than zero'],
    ['-5s', 'must be greater than zero'],
    ['500us', 'must be at least 1ms'],
    ['0.5ms', 'must be at least 1ms'],
    ['999999ns', 'must be at least 1ms'],
    ['24h0m0.001s', 'must be at most 24h0m0s'],
    ['25h', 'must be at most 24h0m0s'],
    ['2562047h', 'must be at most 24h0m0s'],
    ['5', 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)'],
    ['30', 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)'],
    ['1d', 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)'],
    ['', 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)'],
    ['30 s', 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)'],
    ['9999999999999999999h', 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)'],
  ];
  for (const [flag, def, key] of durFlags) {
    it.each(badDurations)(`--${flag}=%j → %s`, (value, reason) => {
      expect(refuse([...INSECURE, `--${flag}`, value])).toEqual({
        kind: 'refuse',
        event: REFUSAL_EVENTS.invalidFlagValue,
        fields: { flag: `--${flag}`, value, reason, fix: durFix(flag, def) },
        logFormat: 'text',
      });
    });
    it.each<[string, number]>([
      ['1ms', 1],
      ['1000us', 1],
      ['1.5ms', 1.5],
      ['24h', 86_400_000],
      ['1m30s', 90_000],
    ])(`--${flag}=%j → %d ms`, (value, ms) => {
      expect(run([...INSECURE, `--${flag}=${value}`])[key]).toBe(ms);
    });
  }

  it.each(['yaml', 'JSON', 'Text', '', ' json'])('--log-format=%j', (value) => {
    expect(refuse([...INSECURE, `--log-format=${value}`])).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.invalidFlagValue,
      fields: {
        flag: '--log-format',
        value,
        reason: 'must be "text" or "json"',
        fix: 'use --log-format=text or --log-format=json',
      },
      logFormat: 'text',
    });
  });

  it.each<[string[], string]>([
    [['--tls-cert=', '--tls-key', 'k'], 'tls-cert'],
    [['--tls-cert', 'c', '--tls-key='], 'tls-key'],
  ])('%j: empty TLS file name', (argv, flag) => {
    expect(refuse(argv).fields).toEqual({
      flag: `--${flag}`,
      value: '',
      reason: 'must not be empty',
      fix: `pass the path of a PEM file, e.g. --${flag}=/etc/relay/${flag === 'tls-cert' ? 'cert' : 'key'}.pem`,
    });
  });

  it('first failure wins, in flag-table order', () => {
    expect(refuse([...INSECURE, '--shutdown-timeout=0', '--max-connections=0', '--log-format=x']).fields.flag).toBe(
      '--max-connections',
    );
    expect(refuse([...INSECURE, '--shutdown-timeout=0', '--log-format=x']).fields.flag).toBe('--shutdown-timeout');
  });

  it('values are checked before listener addresses', () => {
    expect(refuse(['--insecure-listen', ':0', '--grace-period', '0']).event).toBe(REFUSAL_EVENTS.invalidFlagValue);
  });
});

describe('listener addresses', () => {
  it.each<[string, { host: string; port: number }]>([
    [':8080', { host: '', port: 8080 }],
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    ['0.0.0.0:80', { host: '0.0.0.0', port: 80 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['[::]:8080', { host: '::', port: 8080 }],
    ['[fe80::1%eth0]:8080', { host: 'fe80::1%eth0', port: 8080 }],
    ['localhost:8080', { host: 'localhost', port: 8080 }],
    ['relay.example.com:443', { host: 'relay.example.com', port: 443 }],
    [':1', { host: '', port: 1 }],
    [':65535', { host: '', port: 65535 }],
    [':08080', { host: '', port: 8080 }],
  ])('--insecure-listen %j', (value, addr) => {
    expect(run(['--insecure-listen', value]).listen).toEqual(addr);
  });

  it.each<[string, string]>([
    ['', 'address is empty'],
    [':0', 'port 0 is not allowed (the relay must bind a known port)'],
    ['127.0.0.1:0', 'port 0 is not allowed (the relay must bind a known port)'],
    [':65536', 'port out of range (must be 1 to 65535)'],
    [':99999999999999999999', 'port out of range (must be 1 to 65535)'],
    ['8080', 'missing port in address'],
    ['127.0.0.1', 'missing port in address'],
    ['127.0.0.1:', 'port is empty'],
    ['::1:8080', 'too many colons in address (write IPv6 hosts in brackets, e.g. [::1]:9090)'],
    ['[::1]', 'missing port in address'],
    ['[::1:8080', "missing ']' in address"],
    ['[::1]8080', "unexpected characters after ']' in address"],
    ['[[::1]]:80', 'unexpected bracket in address'],
    ['a]:80', 'unexpected bracket in address'],
    [':http', 'port must be a decimal number from 1 to 65535'],
    [':-1', 'port must be a decimal number from 1 to 65535'],
    [':+80', 'port must be a decimal number from 1 to 65535'],
    [': 80', 'port must be a decimal number from 1 to 65535'],
    ['[localhost]:80', 'brackets must hold an IPv6 literal'],
    ['[127.0.0.1]:80', 'brackets must hold an IPv6 literal'],
    ['010.0.0.1:80', 'host is not a valid IPv4 address (four decimal octets, no leading zeros)'],
    ['127.1:80', 'host is not a valid IPv4 address (four decimal octets, no leading zeros)'],
    ['256.0.0.1:80', 'host is not a valid IPv4 address (four decimal octets, no leading zeros)'],
    ['a b:80', 'host is not an IP literal or a valid hostname'],
    ['-bad.example:80', 'host is not an IP literal or a valid hostname'],
    ['under_score:80', 'host is not an IP literal or a valid hostname'],
  ])('--insecure-listen %j → %s', (value, reason) => {
    expect(refuse(['--insecure-listen', value])).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.invalidListenerAddress,
      fields: { flag: '--insecure-listen', value, reason },
      logFormat: 'text',
    });
  });

  it('--https-listen is checked in static-TLS mode', () => {
    expect(refuse([...TLS, '--https-listen', ':0']).fields).toEqual({
      flag: '--https-listen',
      value: ':0',
      reason: 'port 0 is not allowed (the relay must bind a known port)',
    });
    expect(refuse([...TLS, '--https-listen=']).fields).toEqual({
      flag: '--https-listen',
      value: '',
      reason: 'address is empty',
    });
  });

  it('listener addresses are checked before --metrics-listen', () => {
    expect(refuse(['--insecure-listen', ':0', '--metrics-listen', 'localhost:1']).event).toBe(
      REFUSAL_EVENTS.invalidListenerAddress,
    );
  });

  it.each<[{ host: string; port: number }, string]>([
    [{ host: '', port: 443 }, ':443'],
    [{ host: '127.0.0.1', port: 9090 }, '127.0.0.1:9090'],
    [{ host: '::1', port: 9090 }, '[::1]:9090'],
  ])('formatListenAddress(%j) = %s', (addr, text) => {
    expect(formatListenAddress(addr)).toBe(text);
  });
});

describe('--metrics-listen', () => {
  it.each<[string, { host: string; port: number } | null]>([
    ['127.0.0.1:9090', { host: '127.0.0.1', port: 9090 }],
    ['127.9.9.9:1', { host: '127.9.9.9', port: 1 }],
    ['127.255.255.255:65535', { host: '127.255.255.255', port: 65535 }],
    ['[::1]:9090', { host: '::1', port: 9090 }],
    ['[0:0:0:0:0:0:0:1]:9090', { host: '0:0:0:0:0:0:0:1', port: 9090 }],
    ['', null],
  ])('%j accepted', (value, expected) => {
    expect(run([...INSECURE, `--metrics-listen=${value}`]).metricsListen).toEqual(expected);
    expect(run([...INSECURE, '--metrics-listen', value]).metricsListen).toEqual(expected);
  });

  const NOT_LITERAL =
    'host is not an IP literal (hostnames, localhost included, are refused: DNS can change between check and bind)';
  const NOT_LOOPBACK = 'not a loopback address (must be in 127.0.0.0/8 or ::1)';
  it.each<[string, string]>([
    ['localhost:9090', NOT_LITERAL],
    ['metrics.internal:9090', NOT_LITERAL],
    ['127.0.0.01:9090', NOT_LITERAL],
    ['127.1:9090', NOT_LITERAL],
    ['0.0.0.0:9090', NOT_LOOPBACK],
    ['10.0.0.1:9090', NOT_LOOPBACK],
    ['128.0.0.1:9090', NOT_LOOPBACK],
    ['[::]:9090', NOT_LOOPBACK],
    ['[::2]:9090', NOT_LOOPBACK],
    ['[::127.0.0.1]:9090', NOT_LOOPBACK],
    ['[fe80::1]:9090', NOT_LOOPBACK],
    // IPv4-mapped loopback: Go's IsLoopback() accepts it, we refuse (see checkMetricsListen).
    ['[::ffff:127.0.0.1]:9090', 'IPv4-mapped IPv6 addresses are not allowed (write the IPv4 literal, e.g. 127.0.0.1)'],
    ['[::ffff:7f00:1]:9090', 'IPv4-mapped IPv6 addresses are not allowed (write the IPv4 literal, e.g. 127.0.0.1)'],
    ['[::1%lo]:9090', 'IPv6 zones are not allowed'],
    ['[127.0.0.1]:9090', 'brackets are only for IPv6 literals'],
    ['[localhost]:9090', 'host is not an IP literal'],
    [':9090', 'host is empty (would listen on all interfaces)'],
    ['127.0.0.1:0', 'port 0 is not allowed (the relay must bind a known port)'],
    ['[::1]:0', 'port 0 is not allowed (the relay must bind a known port)'],
    ['127.0.0.1', 'missing port in address'],
    ['127.0.0.1:', 'port is empty'],
    ['::1:9090', 'too many colons in address (write IPv6 hosts in brackets, e.g. [::1]:9090)'],
    ['::1', 'too many colons in address (write IPv6 hosts in brackets, e.g. [::1]:9090)'],
    ['127.0.0.1:65536', 'port out of range (must be 1 to 65535)'],
    ['127.0.0.1:metrics', 'port must be a decimal number from 1 to 65535'],
  ])('%j refused: %s', (value, reason) => {
    expect(refuse([...INSECURE, '--metrics-listen', value])).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.invalidMetricsListen,
      fields: { value, reason, fix: METRICS_LISTEN_FIX },
      logFormat: 'text',
    });
  });

  it('the fix hint is the documented one', () => {
    expect(METRICS_LISTEN_FIX).toBe(
      'use a loopback IP literal with a non-zero port, e.g. 127.0.0.1:9090 or [::1]:9090, or --metrics-listen="" to disable',
    );
  });

  it('--metrics-listen is checked before env vars', () => {
    expect(refuse([...INSECURE, '--metrics-listen', 'localhost:9090'], { PYRYCODE_RELAY_PRODUCTION: 'x' }).event).toBe(
      REFUSAL_EVENTS.invalidMetricsListen,
    );
  });
});

describe('environment flags', () => {
  const names = ['PYRYCODE_RELAY_PRODUCTION', 'PYRYCODE_RELAY_SINGLE_INSTANCE'] as const;
  for (const name of names) {
    it.each(['', 'true', ' 1', '1 ', '0', 'yes', '01', '1\n', 'TRUE'])(`${name}=%j refused`, (value) => {
      expect(refuse(TLS, { [name]: value })).toEqual({
        kind: 'refuse',
        event: REFUSAL_EVENTS.invalidEnv,
        fields: { env_var: name, reason: `malformed-value: expected "1" or unset, got ${JSON.stringify(value)}` },
        logFormat: 'text',
      });
    });
  }

  it('exact reason text', () => {
    expect(refuse(TLS, { PYRYCODE_RELAY_PRODUCTION: 'true' }).fields.reason).toBe(
      'malformed-value: expected "1" or unset, got "true"',
    );
  });

  it.each<[Env, boolean, boolean]>([
    [{}, false, false],
    [{ PYRYCODE_RELAY_PRODUCTION: undefined }, false, false],
    [{ PYRYCODE_RELAY_PRODUCTION: '1' }, true, false],
    [{ PYRYCODE_RELAY_SINGLE_INSTANCE: '1' }, false, true],
    [{ PYRYCODE_RELAY_PRODUCTION: '1', PYRYCODE_RELAY_SINGLE_INSTANCE: '1' }, true, true],
  ])('%j → production %s, bypass %s', (env, production, bypass) => {
    const c = run(TLS, env);
    expect(c.production).toBe(production);
    expect(c.singleInstanceBypass).toBe(bypass);
  });

  it('PRODUCTION is checked before SINGLE_INSTANCE', () => {
    expect(refuse(TLS, { PYRYCODE_RELAY_PRODUCTION: 'x', PYRYCODE_RELAY_SINGLE_INSTANCE: 'y' }).fields.env_var).toBe(
      'PYRYCODE_RELAY_PRODUCTION',
    );
  });

  it('unknown env vars are ignored', () => {
    expect(run(INSECURE, { PYRYCODE_RELAY_FOO: 'bar', PYRYCODE_RELAY_DEBUG: 'x', PATH: '/bin' })).toEqual(DEFAULTS);
  });

  describe('never reads process.env', () => {
    const saved = { ...process.env };
    afterEach(() => {
      for (const k of ['PYRYCODE_RELAY_PRODUCTION', 'FLY_APP_NAME', 'PYRYCODE_RELAY_FCM_CREDENTIALS', 'HOME']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    });
    it('ignores garbage in the real environment', () => {
      process.env['PYRYCODE_RELAY_PRODUCTION'] = 'garbage';
      process.env['FLY_APP_NAME'] = 'some-app';
      process.env['PYRYCODE_RELAY_FCM_CREDENTIALS'] = 'garbage';
      process.env['HOME'] = '/real/home';
      expect(run(INSECURE, {}, undefined)).toEqual({ ...DEFAULTS, certCache: '.pyrycode-relay/certs' });
    });
  });
});

describe('single instance and production mode', () => {
  const multi: LogFields = {
    env_var: 'FLY_APP_NAME',
    bypass_env_var: 'PYRYCODE_RELAY_SINGLE_INSTANCE',
    fix: 'the registry lives in one process: run exactly one instance (fly scale count 1) and set PYRYCODE_RELAY_SINGLE_INSTANCE=1',
  };

  it('FLY_APP_NAME without the bypass → multi-instance refusal', () => {
    expect(refuse(TLS, { FLY_APP_NAME: 'pyrycode-relay' })).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.multiInstance,
      fields: multi,
      logFormat: 'text',
    });
  });

  it('the refusal uses --log-format', () => {
    expect(refuse([...TLS, '--log-format=json'], { FLY_APP_NAME: 'x' }).logFormat).toBe('json');
  });

  it.each<[Env, string]>([
    [{ FLY_APP_NAME: 'pyrycode-relay', PYRYCODE_RELAY_SINGLE_INSTANCE: '1' }, 'pyrycode-relay'],
    [{ FLY_APP_NAME: '' }, ''],
    [{}, ''],
  ])('%j runs', (env, name) => {
    expect(run(TLS, env).flyAppName).toBe(name);
  });

  it('env validation precedes the single-instance check', () => {
    expect(refuse(TLS, { FLY_APP_NAME: 'x', PYRYCODE_RELAY_SINGLE_INSTANCE: 'true' }).event).toBe(
      REFUSAL_EVENTS.invalidEnv,
    );
  });

  it('production + --insecure-listen is refused', () => {
    expect(refuse(INSECURE, { PYRYCODE_RELAY_PRODUCTION: '1' })).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.insecureInProduction,
      fields: { env_var: 'PYRYCODE_RELAY_PRODUCTION' },
      logFormat: 'text',
    });
  });

  it('the single-instance check precedes the production check', () => {
    expect(refuse(INSECURE, { PYRYCODE_RELAY_PRODUCTION: '1', FLY_APP_NAME: 'x' }).event).toBe(
      REFUSAL_EVENTS.multiInstance,
    );
  });

  it('production + static TLS runs', () => {
    const c = run(TLS, { PYRYCODE_RELAY_PRODUCTION: '1', FLY_APP_NAME: 'x', PYRYCODE_RELAY_SINGLE_INSTANCE: '1' });
    expect(c).toMatchObject({ mode: 'tls', production: true, singleInstanceBypass: true, flyAppName: 'x' });
  });
});

describe('PYRYCODE_RELAY_FCM_CREDENTIALS', () => {
  const MARKER = 'leaky-secret-marker-7f3a';
  let rsaPkcs8 = '';
  let rsaPkcs1 = '';
  let ecPkcs8 = '';
  let rsaPssPkcs8 = '';
  let rsaEncrypted = '';
  let rsaPublic = '';

  beforeAll(() => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    rsaPkcs8 = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    rsaPkcs1 = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    rsaPublic = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    rsaEncrypted = rsa.privateKey
      .export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' })
      .toString();
    ecPkcs8 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    rsaPssPkcs8 = generateKeyPairSync('rsa-pss', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
  });

  const key = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    type: 'service_account',
    project_id: 'pyrycode-test',
    private_key_id: `abc123-${MARKER}`,
    private_key: rsaPkcs8,
    client_email: `relay-${MARKER}@pyrycode-test.iam.gserviceaccount.com`,
    client_id: '1234567890',
    token_uri: 'https://oauth2.googleapis.com/token',
    ...over,
  });
  const creds = (value: string): Env => ({ PYRYCODE_RELAY_FCM_CREDENTIALS: value });

  it('unset → null (push off)', () => {
    expect(run(TLS).fcmCredentials).toBeNull();
  });

  it('PKCS#8 RSA key', () => {
    expect(run(TLS, creds(JSON.stringify(key()))).fcmCredentials).toEqual({
      clientEmail: `relay-${MARKER}@pyrycode-test.iam.gserviceaccount.com`,
      privateKeyPem: rsaPkcs8,
      tokenUri: 'https://oauth2.googleapis.com/token',
      projectId: 'pyrycode-test',
    });
  });

  it('PKCS#1 RSA key', () => {
    expect(run(TLS, creds(JSON.stringify(key({ private_key: rsaPkcs1 })))).fcmCredentials?.privateKeyPem).toBe(
      rsaPkcs1,
    );
  });

  it('defaults: token_uri and project_id', () => {
    const c = run(TLS, creds(JSON.stringify(key({ token_uri: undefined, project_id: undefined })))).fcmCredentials;
    expect(c).toMatchObject({ tokenUri: DEFAULT_FCM_TOKEN_URI, projectId: '' });
    expect(DEFAULT_FCM_TOKEN_URI).toBe('https://oauth2.googleapis.com/token');
    const d = run(TLS, creds(JSON.stringify(key({ token_uri: 7, project_id: 8 })))).fcmCredentials;
    expect(d).toMatchObject({ tokenUri: DEFAULT_FCM_TOKEN_URI, projectId: '' });
  });

  it('a custom token_uri is kept', () => {
    const c = run(TLS, creds(JSON.stringify(key({ token_uri: 'http://127.0.0.1:1234/token' })))).fcmCredentials;
    expect(c?.tokenUri).toBe('http://127.0.0.1:1234/token');
  });

  it('pretty-printed JSON with a trailing newline is fine', () => {
    expect(run(TLS, creds(JSON.stringify(key(), null, 2) + '\n')).fcmCredentials).not.toBeNull();
  });

  const bad: Array<[string, () => string]> = [
    ['EC key', () => JSON.stringify(key({ private_key: ecPkcs8 }))],
    ['RSA-PSS key', () => JSON.stringify(key({ private_key: rsaPssPkcs8 }))],
    ['encrypted PKCS#8 key', () => JSON.stringify(key({ private_key: rsaEncrypted }))],
    ['public key instead of private', () => JSON.stringify(key({ private_key: rsaPublic }))],
    [
      'garbage PEM',
      () => JSON.stringify(key({ private_key: `-----BEGIN PRIVATE KEY-----\n${MARKER}\n-----END PRIVATE KEY-----\n` })),
    ],
    ['truncated PEM', () => JSON.stringify(key({ private_key: rsaPkcs8.slice(0, 200) }))],
    ['private_key missing', () => JSON.stringify(key({ private_key: undefined }))],
    ['private_key not a string', () => JSON.stringify(key({ private_key: { pem: rsaPkcs8 } }))],
    ['private_key empty', () => JSON.stringify(key({ private_key: '' }))],
    ['wrong type', () => JSON.stringify(key({ type: 'authorized_user' }))],
    ['type missing', () => JSON.stringify(key({ type: undefined }))],
    ['client_email missing', () => JSON.stringify(key({ client_email: undefined }))],
    ['client_email empty', () => JSON.stringify(key({ client_email: '' }))],
    ['client_email not a string', () => JSON.stringify(key({ client_email: [MARKER] }))],
    ['garbage (not JSON)', () => `{"private_key": "${MARKER}`],
    [
      'JSON with the PEM unescaped',
      () => `{"type":"service_account","client_email":"${MARKER}","private_key":"${rsaPkcs8}"}`,
    ],
    ['JSON array', () => JSON.stringify([key()])],
    ['JSON null', () => 'null'],
    ['JSON string', () => JSON.stringify(JSON.stringify(key()))],
    ['empty string', () => ''],
    ['whitespace', () => '   '],
    ['file path instead of content', () => `/etc/relay/${MARKER}.json`],
  ];

  it.each(bad)('%s → refused with the fixed reason, value withheld', (_name, make) => {
    const value = make();
    const out = refuse(TLS, creds(value));
    expect(out).toEqual({
      kind: 'refuse',
      event: REFUSAL_EVENTS.invalidEnv,
      fields: { env_var: 'PYRYCODE_RELAY_FCM_CREDENTIALS', reason: FCM_REFUSAL_REASON },
      logFormat: 'text',
    });
    expect(FCM_REFUSAL_REASON).toBe('not a service-account JSON key (value withheld)');
    assertNoLeak(value, out);
  });

  it('the fixed reason is also used with --log-format=json, and the logged lines leak nothing', () => {
    const value = JSON.stringify(key({ private_key: ecPkcs8 }));
    const out = refuse([...TLS, '--log-format', 'json'], creds(value));
    expect(out.logFormat).toBe('json');
    assertNoLeak(value, out);
  });

  it('refusals after a valid key never carry it either', () => {
    const value = JSON.stringify(key());
    for (const out of [
      refuse(TLS, { ...creds(value), FLY_APP_NAME: 'x' }),
      refuse(INSECURE, { ...creds(value), PYRYCODE_RELAY_PRODUCTION: '1' }),
    ]) {
      assertNoLeak(value, out);
    }
  });

  it('env vars are checked in order: PRODUCTION, SINGLE_INSTANCE, then FCM', () => {
    expect(refuse(TLS, { ...creds('x'), PYRYCODE_RELAY_SINGLE_INSTANCE: 'no' }).fields.env_var).toBe(
      'PYRYCODE_RELAY_SINGLE_INSTANCE',
    );
  });

  /**
   * No 8-character substring of the credential value (other than text that is also in our fixed
   * strings, checked below not to happen for these values) appears in the outcome or in the log
   * line it produces, in either format.
   */
  function assertNoLeak(value: string, out: Refuse): void {
    const lines: string[] = [];
    for (const format of ['text', 'json'] as const) {
      createLogger(format, { write: (l: string) => lines.push(l) }).error(out.event, out.fields);
    }
    const haystacks = [JSON.stringify(out), ...lines];
    expect(haystacks.join('\n')).not.toContain(MARKER);
    const n = 8;
    for (let i = 0; i + n <= value.length; i++) {
      const sub = value.slice(i, i + n);
      for (const h of haystacks) {
        if (h.includes(sub)) throw new Error(`refusal output contains a substring of the credential at offset ${i}`);
      }
    }
  }
});

describe('robustness', () => {
  it('never throws, whatever the input', () => {
    const weird = [
      '\u0000',
      '--\u0000',
      '-\uffff',
      '--insecure-listen=\u2028:80',
      '--=',
      '-=',
      '--metrics-listen=[',
      '--metrics-listen=[]:1',
      '--insecure-listen=[]:1',
    ];
    for (const a of weird) {
      expect(() => parseConfig([a], {}, HOME)).not.toThrow();
      expect(() => parseConfig([...INSECURE, a], { PYRYCODE_RELAY_FCM_CREDENTIALS: a }, HOME)).not.toThrow();
    }
  });

  it('does not mutate argv or env', () => {
    const argv = [...INSECURE, '--max-connections', '5'];
    const env: Env = { PYRYCODE_RELAY_SINGLE_INSTANCE: '1' };
    const argvCopy = [...argv];
    const envCopy = { ...env };
    run(argv, env);
    expect(argv).toEqual(argvCopy);
    expect(env).toEqual(envCopy);
  });
});
