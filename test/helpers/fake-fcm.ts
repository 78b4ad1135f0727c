// Fake Google endpoints on 127.0.0.1 for push-wake tests: an OAuth2 token server and an FCM HTTP v1
// server, both real HTTP. Each records every request (method, path, headers, body) and answers
// through a replaceable handler; `stall()` keeps a request open until released or the server
// closes. Plus a generated service-account key and a verifier for the RS256 JWT assertion.

import { createPublicKey, createVerify, generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FcmServiceAccount } from '../../src/push/fcm.js';
import { withTimeout } from './wait.js';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export type Handler = (req: RecordedRequest, res: ServerResponse) => void;

export class FakeServer {
  readonly requests: RecordedRequest[] = [];
  /** Requests held open by stall(). */
  readonly stalled: ServerResponse[] = [];
  handler: Handler;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    handler: Handler,
  ) {
    this.handler = handler;
  }

  static async start(handler: Handler): Promise<FakeServer> {
    const server = createServer();
    const { port } = await withTimeout(
      new Promise<{ port: number }>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve(server.address() as { port: number }));
      }),
      5_000,
      'fake server listen',
    );
    const fake = new FakeServer(server, port, handler);
    server.on('connection', (socket: Socket) => {
      fake.sockets.add(socket);
      socket.on('close', () => fake.sockets.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const recorded: RecordedRequest = {
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        };
        fake.requests.push(recorded);
        fake.handler(recorded, res);
      });
    });
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Keeps `res` open (no answer) until release() or close(). */
  stall(res: ServerResponse): void {
    this.stalled.push(res);
  }

  /** Answers every stalled request with `answer`. */
  release(answer: (res: ServerResponse) => void): void {
    for (const res of this.stalled.splice(0)) if (!res.destroyed && !res.writableEnded) answer(res);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', ...headers });
  res.end(text);
}

// ---- Markers that must never reach a log line ----

export const ACCESS_TOKEN = 'ya29.ACCESS-TOKEN-MARKER-c0ffee';
export const FCM_FREE_TEXT = 'FCM-FREE-TEXT-MARKER Requested entity was not found.';
export const MESSAGE_NAME = 'projects/pyrycode-mobile/messages/0:1700000000000000%abcdef0123456789';

/** The FCM error reply Google sends, with free text in error.message. */
export function fcmErrorBody(code: number, status: string, errorCode?: string): unknown {
  return {
    error: {
      code,
      message: FCM_FREE_TEXT,
      status,
      details:
        errorCode === undefined ? [] : [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode }],
    },
  };
}

// ---- Service account ----

export interface TestKey {
  credentials: FcmServiceAccount;
  publicKeyPem: string;
  /** The service-account JSON, as PYRYCODE_RELAY_FCM_CREDENTIALS holds it. */
  json: string;
  /** Lines of the private key's base64 body (each must stay out of the logs). */
  pemBodyLines: string[];
}

let cachedKeyPair: { privateKeyPem: string; publicKeyPem: string } | undefined;

/** A service-account key (one RSA key pair per test process) whose token_uri is `tokenUri`. */
export function testKey(tokenUri: string): TestKey {
  cachedKeyPair ??= (() => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    return {
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    };
  })();
  const credentials: FcmServiceAccount = {
    clientEmail: 'relay-push@pyrycode-test.iam.gserviceaccount.com',
    privateKeyPem: cachedKeyPair.privateKeyPem,
    tokenUri,
    projectId: 'pyrycode-test',
  };
  const json = JSON.stringify({
    type: 'service_account',
    project_id: credentials.projectId,
    private_key_id: 'key-id-0123',
    private_key: credentials.privateKeyPem,
    client_email: credentials.clientEmail,
    client_id: '1234567890',
    token_uri: tokenUri,
  });
  const pemBodyLines = cachedKeyPair.privateKeyPem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
  return { credentials, publicKeyPem: cachedKeyPair.publicKeyPem, json, pemBodyLines };
}

// ---- JWT ----

export interface VerifiedAssertion {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  signatureValid: boolean;
}

/** Decodes a JWT assertion and checks its RS256 signature with `publicKeyPem`. */
export function verifyAssertion(jwt: string, publicKeyPem: string): VerifiedAssertion {
  const parts = jwt.split('.');
  if (parts.length !== 3) throw new Error(`not a JWT: ${parts.length} parts`);
  const [h, c, s] = parts as [string, string, string];
  const verifier = createVerify('RSA-SHA256');
  verifier.update(`${h}.${c}`);
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as Record<string, unknown>,
    signatureValid: verifier.verify(createPublicKey(publicKeyPem), Buffer.from(s, 'base64url')),
  };
}

// ---- A token server and an FCM server with Google's happy-path answers ----

export interface FakeGoogle {
  token: FakeServer;
  fcm: FakeServer;
  key: TestKey;
  /** The token server's token URL (the key's token_uri). */
  tokenUrl: string;
  /** Token requests' form fields. */
  tokenForms(): URLSearchParams[];
  /** FCM send requests only. */
  sends(): RecordedRequest[];
  /** Default handlers back. */
  reset(): void;
  close(): Promise<void>;
}

export const SEND_PATH = '/v1/projects/pyrycode-mobile/messages:send';

export const okToken =
  (expiresIn: number | undefined = 3599) =>
  (_req: RecordedRequest, res: ServerResponse): void =>
    json(res, 200, { access_token: ACCESS_TOKEN, expires_in: expiresIn, token_type: 'Bearer' });

export const okSend =
  (name: string = MESSAGE_NAME) =>
  (_req: RecordedRequest, res: ServerResponse): void =>
    json(res, 200, { name });

export async function startFakeGoogle(): Promise<FakeGoogle> {
  const token = await FakeServer.start(okToken());
  const fcm = await FakeServer.start(okSend());
  const tokenUrl = `${token.url}/token`;
  const key = testKey(tokenUrl);
  return {
    token,
    fcm,
    key,
    tokenUrl,
    tokenForms: () => token.requests.map((r) => new URLSearchParams(r.body)),
    sends: () => fcm.requests.filter((r) => r.path === SEND_PATH),
    reset() {
      token.handler = okToken();
      fcm.handler = okSend();
    },
    async close() {
      await Promise.all([token.close(), fcm.close()]);
    },
  };
}
