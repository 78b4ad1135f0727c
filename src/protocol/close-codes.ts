// Every WebSocket close code and reason the relay sends or names, in one table, so a newcomer
// reads the whole close vocabulary in one place and no copy can drift
// (docs/protocol.md, "Close codes and what to do about them"). The relay's own codes (44xx) mirror the HTTP status they
// would be; the rest are RFC 6455 codes. Reasons are wire bytes: changing one changes what
// clients see.

// ---- RFC 6455 codes ----

export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_PROTOCOL_ERROR = 1002;
/** Never on the wire: the close frame carried no code. */
export const CLOSE_NO_STATUS = 1005;
/** Never on the wire: `ws` reports it when the socket ended without a close frame (an abrupt drop). */
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_INVALID_PAYLOAD = 1007;
export const CLOSE_POLICY_VIOLATION = 1008;
/** `ws` closes with this on its own when an inbound message exceeds the payload limit. */
export const CLOSE_MESSAGE_TOO_BIG = 1009;
export const CLOSE_INTERNAL_ERROR = 1011;

// ---- The relay's codes and reasons ----

/** A phone named a server-id no binary holds. */
export const NO_SERVER_CODE = 4404;
export const NO_SERVER_REASON = 'no server with that id';
/** A binary reclaimed its server-id after the grace window began: the old phones go. */
export const RECLAIM_EVICT_CODE = 4404;
export const RECLAIM_EVICT_REASON = 'binary reclaimed server-id';
/** A binary claimed a server-id whose incumbent answered the liveness probe. */
export const CONFLICT_CODE = 4409;
export const CONFLICT_REASON = 'server-id already claimed';
/** A phone named a server-id that already has the maximum number of phones. */
export const AT_CAP_CODE = 4429;
export const AT_CAP_REASON = 'too many phones for server-id';

/** SIGTERM drain: every registered connection is closed with this. */
export const SHUTDOWN_CODE = CLOSE_GOING_AWAY;
export const SHUTDOWN_REASON = 'shutting down';

/** A peer missed a heartbeat pong; also sent to an incumbent displaced by a takeover. */
export const HEARTBEAT_TIMEOUT_CODE = CLOSE_INTERNAL_ERROR;
export const HEARTBEAT_TIMEOUT_REASON = 'heartbeat timeout';

/** A message's frames did not all arrive within the per-message read deadline. */
export const READ_TIMEOUT_CODE = CLOSE_POLICY_VIOLATION;
export const READ_TIMEOUT_REASON = 'message read timeout';

/** A peer was owed more pongs than the relay keeps pending (a ping flood). */
export const PING_FLOOD_CODE = CLOSE_POLICY_VIOLATION;
export const PING_FLOOD_REASON = 'too many pings';

/** A binary's sends stalled past the send deadline. */
export const WRITE_TIMEOUT_CODE = CLOSE_INTERNAL_ERROR;
export const WRITE_TIMEOUT_REASON = 'write timeout';

/** A phone's outbox ran past its backlog budget, or a write to it failed. */
export const OUTBOX_FAILURE_CODE = CLOSE_INTERNAL_ERROR;
export const BACKLOG_FULL_REASON = 'phone backlog full';
export const WRITE_FAILED_REASON = 'phone write failed';

/** A code `ws` may put on the wire (it throws for anything else). */
/** Cluster mode (docs/operations.md "Cluster mode"): the instance lost its engine or its lease. */
export const CLOSE_SERVICE_RESTART = 1012;
export const FENCED_REASON = 'relay instance fenced';
export const LINK_LOST_REASON = 'relay link lost';
/** Cluster mode: a record between instances was missing or from an old claim (never delivered). */
export const LINK_GAP_REASON = 'relay link gap';
export const STALE_EPOCH_REASON = 'relay link stale';
/** Cluster mode: the engine could not decide a claim or registration after the upgrade. */
export const CLOSE_TRY_AGAIN_LATER = 1013;
export const CLUSTER_UNAVAILABLE_REASON = 'cluster unavailable';

export function isSendableCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== CLOSE_NO_STATUS && code !== CLOSE_ABNORMAL) ||
    (code >= 3000 && code <= 4999)
  );
}
