// The records instances send each other on their bus subject, and how a per-tick batch of them is
// laid out. Binary, not JSON: a frame's bytes travel unchanged (byte-identical delivery) and the
// per-frame cost is a few header bytes and two copies.
//
// Record: kind u8 | epoch f64 | seq u32 | code u16 | connId length u16 | payload length u32 |
// connId (UTF-8) | payload. A payload length of NULL_PAYLOAD means "no frame" (a close directive
// without a frame), distinct from an empty frame.

/** Kinds of record. */
export const REC = {
  /** home -> holder: a frame and/or close directive (code) for a phone; sequenced. */
  toPhone: 1,
  /** holder -> home: a phone's envelope for the binary; sequenced. */
  toBinary: 2,
  /** holder -> home: a close notice for the binary (payload is the notice); sequenced with toBinary. */
  notice: 3,
  /** holder -> home: the phone is gone; unregister its proxy. */
  gone: 4,
  /** home -> holder: close the phone with `code`, payload is "why\nreason". */
  close: 5,
  /** home -> holder: stop reading the phone (its binary is backed up). */
  pause: 6,
  /** home -> holder: read the phone again. */
  resume: 7,
  /** broadcast: a new claim (epoch) moved the server-id named by connId (the directory key). */
  evict: 8,
} as const;

export type RecordKind = (typeof REC)[keyof typeof REC];

export interface LinkRecord {
  kind: RecordKind;
  epoch: number;
  seq: number;
  code: number;
  connId: string;
  payload: Buffer | null;
}

const HEADER_BYTES = 1 + 8 + 4 + 2 + 2 + 4;
const NULL_PAYLOAD = 0xffffffff;

/** Bytes one record takes in a batch. */
export function recordSize(connIdBytes: number, payload: Buffer | null): number {
  return HEADER_BYTES + connIdBytes + (payload === null ? 0 : payload.length);
}

/** Appends records to one growing batch for one destination. */
export class BatchWriter {
  private chunks: Buffer[] = [];
  private size = 0;

  get bytes(): number {
    return this.size;
  }

  get empty(): boolean {
    return this.size === 0;
  }

  add(kind: RecordKind, epoch: number, seq: number, code: number, connId: string, payload: Buffer | null): number {
    const idLength = Buffer.byteLength(connId);
    const header = Buffer.allocUnsafe(HEADER_BYTES + idLength);
    header.writeUInt8(kind, 0);
    header.writeDoubleLE(epoch, 1);
    header.writeUInt32LE(seq >>> 0, 9);
    header.writeUInt16LE(code, 13);
    header.writeUInt16LE(idLength, 15);
    header.writeUInt32LE(payload === null ? NULL_PAYLOAD : payload.length, 17);
    header.write(connId, HEADER_BYTES, 'utf8');
    this.chunks.push(header);
    if (payload !== null && payload.length > 0) this.chunks.push(payload);
    const added = header.length + (payload === null ? 0 : payload.length);
    this.size += added;
    return added;
  }

  /** The batch as one buffer; the writer is empty afterwards. */
  take(): Buffer {
    const out = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.size = 0;
    return out;
  }
}

/** Calls `each` for every record of a batch, in order. Returns false if the batch is truncated
 * or malformed (the records before the damage were delivered). */
export function readBatch(batch: Uint8Array, each: (record: LinkRecord) => void): boolean {
  const buf = Buffer.isBuffer(batch) ? batch : Buffer.from(batch.buffer, batch.byteOffset, batch.byteLength);
  let offset = 0;
  while (offset < buf.length) {
    if (buf.length - offset < HEADER_BYTES) return false;
    const kind = buf.readUInt8(offset) as RecordKind;
    const epoch = buf.readDoubleLE(offset + 1);
    const seq = buf.readUInt32LE(offset + 9);
    const code = buf.readUInt16LE(offset + 13);
    const idLength = buf.readUInt16LE(offset + 15);
    const payloadLength = buf.readUInt32LE(offset + 17);
    offset += HEADER_BYTES;
    if (buf.length - offset < idLength) return false;
    const connId = buf.toString('utf8', offset, offset + idLength);
    offset += idLength;
    let payload: Buffer | null = null;
    if (payloadLength !== NULL_PAYLOAD) {
      if (buf.length - offset < payloadLength) return false;
      // A copy: the frame outlives the engine's receive buffer (it may wait in an outbox).
      payload = Buffer.from(buf.subarray(offset, offset + payloadLength));
      offset += payloadLength;
    }
    each({ kind, epoch, seq, code, connId, payload });
  }
  return true;
}
