// ACME autocert (docs/operations.md, "Autocert (`--domain`)";
// docs/decisions.md, "Certificates are ordered at boot, in the background, and renewed 30 days ahead"): one
// certificate for exactly one domain, obtained and renewed from an ACME CA through acme-client, kept in the cert
// cache.
//
// * Challenges: HTTP-01 (answered by httpChallengeHandler on the --http-listen listener) and
//   TLS-ALPN-01 (a self-signed challenge certificate served on the HTTPS listener to a handshake
//   that offers only the `acme-tls/1` protocol). HTTP-01 is preferred.
// * Host whitelist: the handshake fails (no certificate) for any SNI name other than the domain,
//   and for a handshake without SNI.
// * Boot: a cached certificate that matches the domain and its key and has not expired is served
//   at once. Without one — or when it is within its renewal window (RENEW_BEFORE_MS, or a third of
//   the lifetime of a certificate shorter than 90 days) — a certificate is ordered
//   in the background once the listeners are up (the HTTP-01 listener must answer before the
//   order). Handshakes that arrive while the first order runs wait for it.
// * Renewal: checked every CHECK_INTERVAL_MS (unref'd timer); renewed when the certificate
//   is within its renewal window; the new secure context replaces the old one for new
//   handshakes, no restart. A failed order is retried with backoff (RETRY_MIN_MS doubling to
//   RETRY_MAX_MS) while the old certificate keeps being served; failures are logged
//   `autocert_renewal_failed` (warn) or, with no certificate at all, `autocert_obtain_failed`
//   (error), at most once per FAILURE_LOG_INTERVAL_MS with the number of suppressed repeats.
// * Keys: ECDSA P-256 for the account and the certificate. Cache files (0600, see cert-cache.ts):
//   `acme-account.key`, `<domain>+<ca>.crt` (chain) and `<domain>+<ca>.key`, where <ca> is a
//   hash of the ACME directory URL, so a certificate from a staging or test CA is never served
//   after switching to another CA.
//
// The ACME directory is fetched over HTTPS with Node's normal certificate verification; a private
// CA is trusted through NODE_EXTRA_CA_CERTS (or `caCertificates` here), never by turning
// verification off.

import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls';
import acme from 'acme-client';
import { CertCache } from './cert-cache.js';
import { formatDuration } from '../duration.js';
import { NOT_FOUND_BODY, sendError, writeRawError } from '../http/responses.js';
import { errText, type Logger } from '../log.js';

/** Renew (and at boot: order a new one) when the certificate expires within this long. */
export const RENEW_BEFORE_MS = 30 * 24 * 60 * 60 * 1000;
export const CHECK_INTERVAL_MS = 12 * 60 * 60 * 1000;
/** Backoff between failed orders: first retry after RETRY_MIN_MS, doubling up to RETRY_MAX_MS
 * (five attempts in the first hour, under Let's Encrypt's failed-validation limit). */
export const RETRY_MIN_MS = 2 * 60 * 1000;
export const RETRY_MAX_MS = 60 * 60 * 1000;
export const FAILURE_LOG_INTERVAL_MS = 60 * 60 * 1000;
/** How long a handshake waits for the first certificate order before it fails. */
export const FIRST_ORDER_WAIT_MS = 60_000;
/** Timeout of each request to the ACME CA. */
export const ACME_REQUEST_TIMEOUT_MS = 30_000;
/** Polling a pending challenge or order: after 1 s, doubling up to 30 s, ten polls at most. */
const POLL_OPTIONS = { backoffMin: 1_000, backoffMax: 30_000, backoffAttempts: 10 } as const;

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
export const ACME_TLS_ALPN = 'acme-tls/1';
export const ACCOUNT_KEY_FILE = 'acme-account.key';

export type ChallengeType = 'http-01' | 'tls-alpn-01';

export interface AutocertOptions {
  /** Lowercase, no trailing dot. */
  domain: string;
  /** A directory already prepared by prepareCertCache. */
  cacheDir: string;
  directoryUrl: string;
  log: Logger;
  /** Challenge preference; default HTTP-01 then TLS-ALPN-01. */
  challengePriority?: ChallengeType[];
  /** Extra PEM CA certificates for the ACME directory's HTTPS (process-wide: acme-client has one
   * HTTP client). Operators use NODE_EXTRA_CA_CERTS instead. */
  caCertificates?: Buffer | string;
  renewBeforeMs?: number;
  checkIntervalMs?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  failureLogIntervalMs?: number;
  firstOrderWaitMs?: number;
  now?: () => number;
}

interface Installed {
  context: SecureContext;
  notBeforeMs: number;
  notAfterMs: number;
  serial: string;
}

/** Sockets whose handshake offered only acme-tls/1 for a domain with a pending TLS-ALPN-01
 * challenge (set by the ALPN callback, read by the SNI callback of the same handshake). */
const acmeTlsHandshakes = new WeakSet<object>();

export class AutocertManager {
  readonly domain: string;
  private readonly cache: CertCache;
  private readonly directoryUrl: string;
  private readonly log: Logger;
  private readonly priority: ChallengeType[];
  private readonly renewBeforeMs: number;
  private readonly checkIntervalMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly failureLogIntervalMs: number;
  private readonly firstOrderWaitMs: number;
  private readonly now: () => number;
  private readonly certFile: string;
  private readonly keyFile: string;

  private current: Installed | null = null;
  /** HTTP-01: token -> key authorization. */
  private readonly httpTokens = new Map<string, string>();
  /** TLS-ALPN-01: the challenge certificate while one is pending. */
  private alpnContext: SecureContext | null = null;
  private ordering: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private failures = 0;
  private lastFailureLogMs = -Infinity;
  private suppressedFailures = 0;

  constructor(options: AutocertOptions) {
    this.domain = options.domain;
    this.cache = new CertCache(options.cacheDir);
    this.directoryUrl = options.directoryUrl;
    this.log = options.log;
    this.priority = options.challengePriority ?? ['http-01', 'tls-alpn-01'];
    this.renewBeforeMs = options.renewBeforeMs ?? RENEW_BEFORE_MS;
    this.checkIntervalMs = options.checkIntervalMs ?? CHECK_INTERVAL_MS;
    this.retryMinMs = options.retryMinMs ?? RETRY_MIN_MS;
    this.retryMaxMs = options.retryMaxMs ?? RETRY_MAX_MS;
    this.failureLogIntervalMs = options.failureLogIntervalMs ?? FAILURE_LOG_INTERVAL_MS;
    this.firstOrderWaitMs = options.firstOrderWaitMs ?? FIRST_ORDER_WAIT_MS;
    this.now = options.now ?? Date.now;
    const ca = createHash('sha256').update(options.directoryUrl).digest('hex').slice(0, 12);
    this.certFile = `${this.domain}+${ca}.crt`;
    this.keyFile = `${this.domain}+${ca}.key`;
    acme.axios.defaults.timeout = ACME_REQUEST_TIMEOUT_MS;
    if (options.caCertificates !== undefined) {
      acme.axios.defaults.httpsAgent = new HttpsAgent({ ca: options.caCertificates, keepAlive: true });
    }
  }

  /** True once a certificate is being served. */
  get hasCertificate(): boolean {
    return this.current !== null;
  }

  /** Serial number (hex) and expiry of the served certificate, or null. */
  get certificate(): { serial: string; notAfterMs: number } | null {
    return this.current === null ? null : { serial: this.current.serial, notAfterMs: this.current.notAfterMs };
  }

  /**
   * Serves the cached certificate if there is a usable one (matches the domain and its key, not
   * yet expired). Returns whether it did. An unreadable cache file rejects; a missing, corrupt or
   * mismatched one is ignored (a new certificate is ordered).
   */
  async loadCached(): Promise<boolean> {
    const [cert, key] = await Promise.all([this.cache.read(this.certFile), this.cache.read(this.keyFile)]);
    if (cert === null || key === null) return false;
    const installed = this.validate(cert, key);
    if (installed === null || installed.notAfterMs <= this.now()) return false;
    this.current = installed;
    this.log.info('autocert_certificate_loaded', { domain: this.domain, path: join(this.cache.dir, this.certFile) });
    return true;
  }

  /** Starts the renewal loop; orders a certificate at once if there is none or it expires soon.
   * Call after the HTTP-01 (and HTTPS) listeners are up. */
  start(): void {
    this.stopped = false;
    // Synchronously, so that a handshake arriving right after start() waits for this order.
    if (this.needsOrder()) void this.check();
    else this.schedule(this.checkIntervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One order now (deduplicated with one in flight). Rejects with the order's error. */
  obtain(): Promise<void> {
    if (this.ordering === null) {
      this.ordering = this.order().finally(() => {
        this.ordering = null;
      });
    }
    return this.ordering;
  }

  /** No certificate, or the served one is within its renewal window: RENEW_BEFORE_MS, or a third
   * of its lifetime for certificates shorter than 90 days (a 6-day certificate renews 2 days
   * ahead instead of at every check). */
  private needsOrder(): boolean {
    if (this.current === null) return true;
    const lifetime = this.current.notAfterMs - this.current.notBeforeMs;
    const window = Math.min(this.renewBeforeMs, Math.max(0, lifetime) / 3);
    return this.current.notAfterMs - this.now() <= window;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.check();
    }, delayMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    if (!this.needsOrder()) {
      this.schedule(this.checkIntervalMs);
      return;
    }
    const hadCertificate = this.current !== null;
    try {
      await this.obtain();
      this.failures = 0;
      this.suppressedFailures = 0;
      this.lastFailureLogMs = -Infinity;
      this.schedule(this.checkIntervalMs);
    } catch (err) {
      this.failures++;
      this.logFailure(hadCertificate, errText(err));
      const backoff = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** Math.min(this.failures - 1, 20));
      this.schedule(Math.min(backoff, this.checkIntervalMs));
    }
  }

  private logFailure(renewal: boolean, err: string): void {
    const now = this.now();
    if (now - this.lastFailureLogMs < this.failureLogIntervalMs) {
      this.suppressedFailures++;
      return;
    }
    const suppressed = this.suppressedFailures;
    this.lastFailureLogMs = now;
    this.suppressedFailures = 0;
    if (renewal) this.log.warn('autocert_renewal_failed', { domain: this.domain, err, suppressed });
    else this.log.error('autocert_obtain_failed', { domain: this.domain, err, suppressed });
  }

  private async order(): Promise<void> {
    const started = this.now();
    const client = new acme.Client({
      directoryUrl: this.directoryUrl,
      accountKey: await this.accountKey(),
      ...POLL_OPTIONS,
    });
    await register(client);
    const certKey = newEcKey();
    const [, csr] = await acme.crypto.createCsr({ commonName: this.domain, altNames: [this.domain] }, certKey);
    const chain = await client.auto({
      csr,
      termsOfServiceAgreed: true,
      // The CA reaches the listeners from outside; a self-check from here could fail behind NAT or
      // a load balancer (the reference relay does none either).
      skipChallengeVerification: true,
      challengePriority: this.priority,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        // acme-client's types list only http-01 and dns-01.
        const type: string = challenge.type;
        if (type === 'http-01') {
          this.httpTokens.set(challenge.token, keyAuthorization);
        } else if (type === 'tls-alpn-01') {
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, newEcKey());
          this.alpnContext = createSecureContext({ key: alpnKey, cert: alpnCert, minVersion: 'TLSv1.2' });
        } else {
          throw new Error(`unsupported challenge type ${type}`);
        }
      },
      challengeRemoveFn: async (_authz, challenge) => {
        const type: string = challenge.type;
        if (type === 'http-01') this.httpTokens.delete(challenge.token);
        else if (type === 'tls-alpn-01') this.alpnContext = null;
      },
    });
    const installed = this.validate(Buffer.from(chain), certKey);
    if (installed === null) throw new Error('the CA issued a certificate that does not cover the domain or its key');
    // Serve it first; a cache that cannot be written only costs a new order after a restart.
    this.current = installed;
    try {
      await this.cache.write(this.keyFile, certKey);
      await this.cache.write(this.certFile, chain);
    } catch (err) {
      this.log.warn('autocert_cache_write_failed', { path: this.cache.dir, err: errText(err) });
    }
    this.log.info('autocert_certificate_obtained', {
      domain: this.domain,
      duration: formatDuration(Math.max(0, this.now() - started)),
    });
  }

  private async accountKey(): Promise<Buffer> {
    const cached = await this.cache.read(ACCOUNT_KEY_FILE);
    if (cached !== null) {
      try {
        createPrivateKey(cached);
        return cached;
      } catch {
        // Corrupt: replace it (a new key registers a new account; nothing depends on the old one).
      }
    }
    const key = newEcKey();
    await this.cache.write(ACCOUNT_KEY_FILE, key);
    return key;
  }

  /** The chain and key as a secure context, if the leaf covers the domain, matches the key and
   * parses; null otherwise. Expiry is the caller's business. */
  private validate(chainPem: Buffer, keyPem: Buffer): Installed | null {
    try {
      const leaf = new X509Certificate(chainPem);
      if (leaf.checkHost(this.domain) === undefined) return null;
      if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) return null;
      const context = createSecureContext({ cert: chainPem, key: keyPem, minVersion: 'TLSv1.2' });
      return {
        context,
        notBeforeMs: Date.parse(leaf.validFrom),
        notAfterMs: Date.parse(leaf.validTo),
        serial: leaf.serialNumber,
      };
    } catch {
      return null;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Listeners

  /** The HTTP-01 listener's whole behaviour: the key authorization for a pending token, and 404
   * `404 page not found` for everything else (no redirect, no Host check, no rate limit; an
   * HTTP/1.1 request without any Host gets 400, as from Go's server). */
  readonly httpChallengeHandler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1 && req.headers.host === undefined) {
      // As Go's server, before any handler.
      sendError(res, 400, 'missing required Host header\n');
      return;
    }
    const keyAuthorization = this.challengeResponse(req.url);
    if (keyAuthorization === null) {
      sendError(res, 404, NOT_FOUND_BODY);
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(keyAuthorization),
    });
    res.end(keyAuthorization);
  };

  /** Upgrade requests on the HTTP-01 listener: 404 like every non-challenge request. */
  readonly httpUpgradeHandler = (_req: IncomingMessage, socket: Duplex): void => {
    socket.on('error', () => {});
    writeRawError(socket, 404, NOT_FOUND_BODY);
  };

  private challengeResponse(url: string | undefined): string | null {
    if (url === undefined || !url.startsWith(ACME_CHALLENGE_PREFIX)) return null;
    const q = url.indexOf('?');
    const token = url.slice(ACME_CHALLENGE_PREFIX.length, q < 0 ? undefined : q);
    return this.httpTokens.get(token) ?? null;
  }

  /** TLS options for the HTTPS listener: TLS 1.2+, ALPN http/1.1 (and acme-tls/1 for a pending
   * TLS-ALPN-01 challenge), certificates by SNI for the domain only. */
  tlsOptions(): TlsOptions {
    // The TLS callbacks below are called with another `this`.
    const manager = this;
    return {
      minVersion: 'TLSv1.2',
      ALPNCallback(
        this: unknown,
        { servername, protocols }: { servername: string; protocols: string[] },
      ): string | undefined {
        // RFC 8737: the validator offers acme-tls/1 alone.
        if (protocols.length === 1 && protocols[0] === ACME_TLS_ALPN) {
          if (manager.alpnContext === null || normalizeName(servername) !== manager.domain) return undefined;
          if (typeof this === 'object' && this !== null) acmeTlsHandshakes.add(this);
          return ACME_TLS_ALPN;
        }
        // HTTP/1.1 only (no h2); a client that offers neither gets a no_application_protocol alert.
        return protocols.includes('http/1.1') ? 'http/1.1' : undefined;
      },
      SNICallback(this: unknown, servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void {
        if (normalizeName(servername) !== manager.domain) {
          cb(new Error('server name not allowed'));
          return;
        }
        if (typeof this === 'object' && this !== null && acmeTlsHandshakes.has(this)) {
          if (manager.alpnContext !== null) cb(null, manager.alpnContext);
          else cb(new Error('no pending tls-alpn-01 challenge'));
          return;
        }
        manager.contextForHandshake().then(
          (ctx) => (ctx === null ? cb(new Error('no certificate yet')) : cb(null, ctx)),
          () => cb(new Error('no certificate yet')),
        );
      },
    };
  }

  private async contextForHandshake(): Promise<SecureContext | null> {
    if (this.current !== null) return this.current.context;
    const pending = this.ordering;
    if (pending === null) return null;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      pending.catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.firstOrderWaitMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    return this.servedContext();
  }

  private servedContext(): SecureContext | null {
    return this.current === null ? null : this.current.context;
  }
}

/** Registers the account key (terms of service agreed), or finds the account it already has. */
async function register(client: acme.Client): Promise<void> {
  try {
    await client.createAccount({ termsOfServiceAgreed: true });
  } catch (err) {
    // For a key that already has an account, acme-client follows up with an account update
    // carrying the same fields, which some CAs (pebble) refuse as an empty update. The account
    // URL is known by then, and that is all an order needs.
    try {
      client.getAccountUrl();
    } catch {
      throw err;
    }
  }
}

function newEcKey(): Buffer {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }));
}

function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
