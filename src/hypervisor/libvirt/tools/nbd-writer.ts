import * as net from 'node:net';

import { hvError, toHypervisorError } from '../../driver-errors';

/*
 * The client half of the NBD protocol (https://github.com/NetworkBlockDevice/nbd, doc/proto.md) that a
 * restore needs to write a disk through qemu-nbd: the fixed-newstyle handshake with NBD_OPT_EXPORT_NAME,
 * then WRITE, FLUSH and DISC requests with simple replies (structured replies are never asked for, so
 * every reply is the 16-byte simple one; no READ is ever sent, so no reply carries data).
 */
const NBDMAGIC = Buffer.from('NBDMAGIC', 'latin1');
const IHAVEOPT = Buffer.from('IHAVEOPT', 'latin1');
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_EXPORT_NAME = 1;
const TRANSMIT_READ_ONLY = 1 << 1;
const TRANSMIT_SEND_FLUSH = 1 << 2;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
const NBD_ENOSPC = 28;
const REQUEST_HEADER_BYTES = 28;
const REPLY_BYTES = 16;
/** The largest payload one WRITE carries: well under qemu-nbd's 32 MiB limit. */
export const NBD_MAX_WRITE_BYTES = 8 * 1024 * 1024;

interface Pending {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly what: string;
}

/**
 * One connection to an NBD export opened for writing. Requests may overlap (each resolves when the
 * server replied to it); any protocol or socket failure fails every request still waiting and every
 * later one. `destroy` drops the connection at once (the server then stops: it serves one client).
 */
export class NbdWriter {
  private buffered: Buffer = Buffer.alloc(0);
  private readonly pending = new Map<bigint, Pending>();
  private nextHandle = 1n;
  private failure: Error | null = null;

  private constructor(
    private readonly socket: net.Socket,
    readonly sizeBytes: number,
    private readonly canFlush: boolean,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e) => this.fail(hvError('copy_failed', `nbd connection: ${e.message}`)));
    socket.on('close', () => this.fail(hvError('copy_failed', 'nbd connection closed')));
  }

  /** Connects to the export at the unix socket `path` and negotiates it; it must be writable. */
  static async connect(path: string): Promise<NbdWriter> {
    const socket = net.connect(path);
    try {
      const reader = new HandshakeReader(socket);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      const hello = await reader.take(18);
      if (!hello.subarray(0, 8).equals(NBDMAGIC) || !hello.subarray(8, 16).equals(IHAVEOPT)) {
        throw hvError('copy_failed', 'nbd: not a newstyle NBD server');
      }
      const serverFlags = hello.readUInt16BE(16);
      if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw hvError('copy_failed', 'nbd: not fixed newstyle');
      const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
      const clientFlags = Buffer.alloc(4);
      clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (noZeroes ? FLAG_NO_ZEROES : 0));
      const option = Buffer.alloc(16); // the default export: an empty name
      IHAVEOPT.copy(option, 0);
      option.writeUInt32BE(OPT_EXPORT_NAME, 8);
      option.writeUInt32BE(0, 12);
      socket.write(Buffer.concat([clientFlags, option]));
      const exportInfo = await reader.take(noZeroes ? 10 : 134);
      const size = Number(exportInfo.readBigUInt64BE(0));
      const flags = exportInfo.readUInt16BE(8);
      if (flags & TRANSMIT_READ_ONLY) throw hvError('copy_failed', 'nbd: the export is read-only');
      const rest = reader.detach();
      const writer = new NbdWriter(socket, size, (flags & TRANSMIT_SEND_FLUSH) !== 0);
      if (rest.length > 0) writer.onData(rest);
      return writer;
    } catch (e) {
      socket.destroy();
      throw toHypervisorError(e, 'copy_failed', 'nbd connect');
    }
  }

  /** Writes `data` at `offset` of the export (in requests of at most NBD_MAX_WRITE_BYTES). */
  async write(offset: number, data: Buffer): Promise<void> {
    if (offset < 0 || offset + data.length > this.sizeBytes) {
      throw hvError(
        'copy_failed',
        `nbd write ${offset}+${data.length} outside the export (${this.sizeBytes})`,
      );
    }
    const requests: Promise<void>[] = [];
    for (let from = 0; from < data.length; from += NBD_MAX_WRITE_BYTES) {
      const piece = data.subarray(from, from + NBD_MAX_WRITE_BYTES);
      requests.push(this.request(CMD_WRITE, offset + from, piece.length, piece, `write at ${offset + from}`));
    }
    await Promise.all(requests);
  }

  /** What was written reaches stable storage (the server's fsync), when the server offers it. */
  async flush(): Promise<void> {
    if (this.canFlush) await this.request(CMD_FLUSH, 0, 0, null, 'flush');
  }

  /** Ends the session cleanly: the server stops once it has answered everything before it. */
  async disconnect(): Promise<void> {
    if (this.failure) throw this.failure;
    this.socket.write(this.header(CMD_DISC, 0n, 0, 0));
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.once('close', () => resolve());
      this.socket.end();
    });
  }

  destroy(): void {
    this.fail(hvError('copy_failed', 'nbd connection dropped'));
    this.socket.destroy();
  }

  private request(
    type: number,
    offset: number,
    length: number,
    data: Buffer | null,
    what: string,
  ): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const handle = this.nextHandle++;
    const done = new Promise<void>((resolve, reject) => this.pending.set(handle, { resolve, reject, what }));
    this.socket.write(this.header(type, handle, offset, length));
    if (data) this.socket.write(data);
    return done;
  }

  private header(type: number, handle: bigint, offset: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(0, 4); // no command flags
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    return h;
  }

  private onData(d: Buffer): void {
    this.buffered = this.buffered.length === 0 ? d : Buffer.concat([this.buffered, d]);
    while (this.buffered.length >= REPLY_BYTES) {
      const reply = this.buffered.subarray(0, REPLY_BYTES);
      this.buffered = this.buffered.subarray(REPLY_BYTES);
      const handle = reply.readBigUInt64BE(8);
      const p = this.pending.get(handle);
      if (reply.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC || !p) {
        this.fail(hvError('copy_failed', 'nbd: unexpected reply'));
        this.socket.destroy();
        return;
      }
      this.pending.delete(handle);
      const errno = reply.readUInt32BE(4);
      if (errno === 0) p.resolve();
      else {
        // The disk's file system full is what the caller can act on; any other errno is the copy's.
        const code = errno === NBD_ENOSPC ? 'insufficient_storage' : 'copy_failed';
        p.reject(hvError(code, `nbd ${p.what} failed: ${nbdErrorName(errno)}`));
      }
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }
}

/** The protocol's error numbers (the server maps its errno onto these). */
function nbdErrorName(errno: number): string {
  const names: Record<number, string> = {
    1: 'EPERM',
    5: 'EIO',
    12: 'ENOMEM',
    22: 'EINVAL',
    [NBD_ENOSPC]: 'ENOSPC',
    75: 'EOVERFLOW',
    95: 'ENOTSUP',
    108: 'ESHUTDOWN',
  };
  return names[errno] ?? `error ${errno}`;
}

/** Exact-length reads of the handshake, before the writer takes the socket's data over. */
class HandshakeReader {
  private buffered: Buffer = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private readonly onData = (d: Buffer): void => {
    this.buffered = Buffer.concat([this.buffered, d]);
    this.settle();
  };
  private readonly onEnd = (): void => {
    this.want?.reject(hvError('copy_failed', 'nbd: the server closed the connection during the handshake'));
    this.want = null;
  };

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('close', this.onEnd);
  }

  take(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.settle();
    });
  }

  /** Stops reading; returns what arrived beyond the handshake. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onEnd);
    return this.buffered;
  }

  private settle(): void {
    if (!this.want || this.buffered.length < this.want.n) return;
    const { n, resolve } = this.want;
    this.want = null;
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    resolve(out);
  }
}
