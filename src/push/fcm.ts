// FCM HTTP v1 client for push wakes (docs/protocol.md, "Push wakes"): the OAuth2 service-account JWT flow,
// then one send per wake. Node built-ins only.
//
// Every call: 10 s for the whole exchange (connect to last byte), no redirects (a 3xx is an error,
// its Location never contacted), at most 4 KiB of reply read (the connection is dropped past that).
//
// Secrets stay in this module: the private key, the access token and the device token never
// appear in an error, and neither does anything FCM wrote except its HTTP status and the
// enum-shaped `error.status` / FcmError `errorCode`. Every error message is built from fixed text,
// status codes and those enums only, so callers may log it as is. Errors are classified by class
// (FcmTokenFetchError, FcmUnregisteredError, FcmSendFailedError, FcmCancelledError), never by text.

import { createPrivateKey, createSign, type KeyObject } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** The Firebase project the pyrycode apps live in (fixed by the protocol, not taken from the key). */
/** The fields of a Google service-account key that the FCM flow needs (read by the config parser). */
export interface FcmServiceAccount {
  clientEmail: string;
  privateKeyPem: string;
  tokenUri: string;
  projectId: string;
}

export const FCM_PROJECT_ID = 'pyrycode-mobile';
export const FCM_SEND_PATH = `/v1/projects/${FCM_PROJECT_ID}/messages:send`;
export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** Whole-exchange timeout of each HTTP call (token fetch, send). */
export const FCM_HTTP_TIMEOUT_MS = 10_000;
/** Bytes of a reply the client reads at most. */
export const FCM_MAX_REPLY_BYTES = 4096;
/** An access token is renewed this long before it expires. */
export const TOKEN_REFRESH_MARGIN_MS = 60_000;
/** Lifetime asked for in the JWT assertion (Google's maximum). */
const JWT_LIFETIME_S = 3600;
/** The assertion is dated this far back, for clock skew (as Go's oauth2/jws does). */
const JWT_BACKDATE_S = 10;

/** FCM's message name is logged only if it looks like one. */
const MESSAGE_NAME_RE = /^[A-Za-z0-9/:%_-]{1,256}$/;
/** `error.status` and FcmError `errorCode` are used only when enum-shaped. */
const ENUM_RE = /^[A-Z0-9_]{1,64}$/;
const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
/** An access token must be usable as is in a header: visible ASCII only. */
const ACCESS_TOKEN_RE = /^[\x21-\x7e]{1,4096}$/;
/** Node error codes (ECONNREFUSED, ...) are quoted in transport errors when enum-shaped. */
const ERROR_CODE_RE = /^[A-Z0-9_]{1,64}$/;

// ---- Errors (identity = class) ----

/** Every error FcmSender.send rejects with. The message is safe to log. */
export class FcmError extends Error {
  override readonly name: string = 'FcmError';
}
/** The OAuth2 access token could not be obtained. */
export class FcmTokenFetchError extends FcmError {
  override readonly name = 'FcmTokenFetchError';
}
/** FCM answered with FcmError errorCode UNREGISTERED: the device token is no longer valid. */
export class FcmUnregisteredError extends FcmError {
  override readonly name = 'FcmUnregisteredError';
}
/** Anything else: an FCM error reply, a timeout, a transport failure. */
export class FcmSendFailedError extends FcmError {
  override readonly name = 'FcmSendFailedError';
}
/** The relay-lifetime signal aborted the call (shutdown). */
export class FcmCancelledError extends FcmError {
  override readonly name = 'FcmCancelledError';
}

export const CANCELLED_TEXT = 'relay: fcm send cancelled: shutting down';

// ---- Options ----

export interface FcmOptions {
  credentials: FcmServiceAccount;
  /** Base URL of the FCM API (default https://fcm.googleapis.com); the send path is appended. */
  endpoint: string;
  /** Where the JWT assertion is posted (default: the key's token_uri). */
  tokenUrl: string;
  /** Whole-exchange timeout per call; only tests shorten it. */
  timeoutMs?: number;
  /** Clock for the token cache and the JWT; tests only. */
  now?: () => number;
}

// ---- HTTP: one capped, bounded POST ----

interface Reply {
  status: number;
  body: Buffer;
  /** More than FCM_MAX_REPLY_BYTES arrived; body holds the first FCM_MAX_REPLY_BYTES. */
  truncated: boolean;
}

type HttpFailureKind = 'timeout' | 'cancelled' | 'transport';

class HttpFailure extends Error {
  constructor(
    readonly kind: HttpFailureKind,
    readonly code: string = '',
  ) {
    super(kind);
  }
}

interface Agents {
  http: HttpAgent;
  https: HttpsAgent;
}

function transportFailure(err: unknown): HttpFailure {
  const code = (err as { code?: unknown } | null)?.code;
  return new HttpFailure('transport', typeof code === 'string' && ERROR_CODE_RE.test(code) ? code : '');
}

/** POSTs `body` and reads at most FCM_MAX_REPLY_BYTES of the reply. Rejects with HttpFailure only. */
function post(
  target: URL,
  headers: Record<string, string>,
  body: Buffer,
  timeoutMs: number,
  signal: AbortSignal,
  agents: Agents,
): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    if (signal.aborted) {
      reject(new HttpFailure('cancelled'));
      return;
    }
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    const https = target.protocol === 'https:';
    let req: ReturnType<typeof httpRequest>;
    try {
      req = (https ? httpsRequest : httpRequest)(target, {
        method: 'POST',
        headers: { ...headers, 'Content-Length': String(body.length) },
        agent: https ? agents.https : agents.http,
      });
    } catch (err) {
      // Invalid header characters and the like; the message is not used.
      reject(transportFailure(err));
      return;
    }
    const timer = setTimeout(() => {
      settle(() => reject(new HttpFailure('timeout')));
      req.destroy();
    }, timeoutMs);
    const onAbort = (): void => {
      settle(() => reject(new HttpFailure('cancelled')));
      req.destroy();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => settle(() => reject(transportFailure(err))));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (settled) return;
        const room = FCM_MAX_REPLY_BYTES - size;
        if (chunk.length > room) {
          // The cap: keep what fits, stop reading, drop the connection.
          if (room > 0) chunks.push(chunk.subarray(0, room));
          settle(() => resolve({ status, body: Buffer.concat(chunks), truncated: true }));
          req.destroy();
          return;
        }
        chunks.push(chunk);
        size += chunk.length;
      });
      res.on('end', () => settle(() => resolve({ status, body: Buffer.concat(chunks), truncated: false })));
      res.on('error', (err) => settle(() => reject(transportFailure(err))));
      // A connection that ends before the reply did.
      res.on('close', () => settle(() => reject(new HttpFailure('transport', 'ECONNRESET'))));
    });
    req.end(body);
  });
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---- OAuth2 service-account flow ----

/** Access tokens for the service account: one fetch at a time, shared by every caller, cached
 * until TOKEN_REFRESH_MARGIN_MS before expiry. */
class TokenSource {
  private readonly key: KeyObject;
  private cached: { token: string; refreshAtMs: number } | null = null;
  private inflight: Promise<string> | null = null;

  constructor(
    private readonly clientEmail: string,
    privateKeyPem: string,
    /** JWT audience: the key's token_uri, also when the request goes elsewhere (a proxy). */
    private readonly audience: string,
    private readonly url: URL,
    private readonly timeoutMs: number,
    private readonly now: () => number,
    private readonly agents: Agents,
  ) {
    this.key = createPrivateKey({ key: privateKeyPem, format: 'pem' });
  }

  /** A valid access token. The relay passes one relay-lifetime signal to every call, so a fetch
   * started by one wake may serve others. */
  get(signal: AbortSignal): Promise<string> {
    if (this.cached !== null && this.now() < this.cached.refreshAtMs) return Promise.resolve(this.cached.token);
    if (this.inflight === null) {
      const fetching = this.fetch(signal);
      this.inflight = fetching;
      const clear = (): void => {
        if (this.inflight === fetching) this.inflight = null;
      };
      fetching.then(clear, clear);
    }
    return this.inflight;
  }

  /** Forget the cached token (FCM refused it). */
  invalidate(token: string): void {
    if (this.cached?.token === token) this.cached = null;
  }

  private assertion(nowMs: number): string {
    const iat = Math.floor(nowMs / 1000) - JWT_BACKDATE_S;
    const header = base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
    const claims = base64url(
      JSON.stringify({ iss: this.clientEmail, scope: FCM_SCOPE, aud: this.audience, iat, exp: iat + JWT_LIFETIME_S }),
    );
    const signer = createSign('RSA-SHA256');
    signer.update(`${header}.${claims}`);
    return `${header}.${claims}.${signer.sign(this.key).toString('base64url')}`;
  }

  private async fetch(signal: AbortSignal): Promise<string> {
    const fetchedAt = this.now();
    let body: Buffer;
    try {
      body = Buffer.from(
        new URLSearchParams({ grant_type: JWT_BEARER_GRANT, assertion: this.assertion(fetchedAt) }).toString(),
      );
    } catch {
      throw new FcmTokenFetchError('relay: fcm token fetch failed: cannot sign the assertion');
    }
    let reply: Reply;
    try {
      reply = await post(
        this.url,
        { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body,
        this.timeoutMs,
        signal,
        this.agents,
      );
    } catch (err) {
      throw httpError(err, 'relay: fcm token fetch failed', FcmTokenFetchError);
    }
    if (reply.status < 200 || reply.status > 299) {
      throw new FcmTokenFetchError(`relay: fcm token fetch failed: status ${reply.status}`);
    }
    const parsed = reply.truncated ? undefined : parseJson(reply.body);
    const token = isObject(parsed) ? parsed['access_token'] : undefined;
    if (typeof token !== 'string' || !ACCESS_TOKEN_RE.test(token)) {
      throw new FcmTokenFetchError('relay: fcm token fetch failed: malformed reply');
    }
    // expires_in: seconds, a number or a numeric string. Without a usable one the token serves the
    // callers waiting for this fetch and is not cached.
    const raw = isObject(parsed) ? parsed['expires_in'] : undefined;
    const expiresIn = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    const lifetimeMs = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : 0;
    this.cached = { token, refreshAtMs: fetchedAt + lifetimeMs - TOKEN_REFRESH_MARGIN_MS };
    return token;
  }
}

function httpError(err: unknown, prefix: string, Kind: new (message: string) => FcmError): FcmError {
  if (err instanceof HttpFailure) {
    switch (err.kind) {
      case 'cancelled':
        return new FcmCancelledError(CANCELLED_TEXT);
      case 'timeout':
        return new Kind(`${prefix}: timeout`);
      case 'transport':
        return new Kind(err.code === '' ? `${prefix}: transport error` : `${prefix}: transport error (${err.code})`);
    }
  }
  return new Kind(`${prefix}: internal error`);
}

/** `error.status` and the FcmError `errorCode` of an FCM error reply, each '' unless enum-shaped. */
export function fcmErrorFields(body: Buffer): { status: string; errorCode: string } {
  const parsed = parseJson(body);
  const error = isObject(parsed) ? parsed['error'] : undefined;
  if (!isObject(error)) return { status: '', errorCode: '' };
  const s = error['status'];
  const status = typeof s === 'string' && ENUM_RE.test(s) ? s : '';
  let errorCode = '';
  const details = error['details'];
  if (Array.isArray(details)) {
    for (const d of details) {
      if (!isObject(d) || d['@type'] !== FCM_ERROR_TYPE) continue;
      const c = d['errorCode'];
      if (typeof c === 'string' && ENUM_RE.test(c)) {
        errorCode = c;
        break;
      }
    }
  }
  return { status, errorCode };
}

/** FCM's message name from a success reply, or '' when it is missing or does not look like one. */
export function fcmMessageName(body: Buffer): string {
  const parsed = parseJson(body);
  const name = isObject(parsed) ? parsed['name'] : undefined;
  return typeof name === 'string' && MESSAGE_NAME_RE.test(name) ? name : '';
}

// ---- The sender ----

export class FcmSender {
  private readonly tokens: TokenSource;
  private readonly sendUrl: URL;
  private readonly timeoutMs: number;
  private readonly agents: Agents = {
    http: new HttpAgent({ keepAlive: true }),
    https: new HttpsAgent({ keepAlive: true }),
  };

  /** Throws (without key material in the message) if the key or a URL is unusable; main.ts has
   * validated both before. */
  constructor(options: FcmOptions) {
    this.timeoutMs = options.timeoutMs ?? FCM_HTTP_TIMEOUT_MS;
    const base = new URL(options.endpoint);
    this.sendUrl = new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}${FCM_SEND_PATH}`);
    try {
      this.tokens = new TokenSource(
        options.credentials.clientEmail,
        options.credentials.privateKeyPem,
        options.credentials.tokenUri,
        new URL(options.tokenUrl),
        this.timeoutMs,
        options.now ?? Date.now,
        this.agents,
      );
    } catch {
      throw new Error('relay: fcm: unusable service-account key or token URL');
    }
  }

  /** Sends a wake to `deviceToken`. Resolves with FCM's message name ('' when it returned none that
   * looks valid); rejects with an FcmError subclass only. */
  async send(deviceToken: string, signal: AbortSignal): Promise<string> {
    const access = await this.tokens.get(signal);
    const body = Buffer.from(`{"message":{"token":${JSON.stringify(deviceToken)},"android":{"priority":"HIGH"}}}`);
    let reply: Reply;
    try {
      reply = await post(
        this.sendUrl,
        { Authorization: `Bearer ${access}`, 'Content-Type': 'application/json; charset=utf-8' },
        body,
        this.timeoutMs,
        signal,
        this.agents,
      );
    } catch (err) {
      throw httpError(err, 'relay: fcm send failed', FcmSendFailedError);
    }
    if (reply.status >= 200 && reply.status <= 299) return reply.truncated ? '' : fcmMessageName(reply.body);
    // A refused access token is fetched anew for the next wake.
    if (reply.status === 401) this.tokens.invalidate(access);
    const { status, errorCode } = reply.truncated ? { status: '', errorCode: '' } : fcmErrorFields(reply.body);
    const detail = [status, errorCode].filter((x) => x !== '');
    const text = `relay: fcm send failed: status ${reply.status}${detail.length > 0 ? ` (${detail.join(', ')})` : ''}`;
    if (errorCode === 'UNREGISTERED') throw new FcmUnregisteredError(text);
    throw new FcmSendFailedError(text);
  }

  /** Drops pooled connections (after the last send). */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}
