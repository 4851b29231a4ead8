import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { isHypervisorError } from '../../hypervisor-driver';
import { NBD_MAX_WRITE_BYTES, NbdWriter } from './nbd-writer';

/**
 * A minimal NBD server for the protocol cases qemu-nbd will not produce on demand (an errno reply,
 * a connection dropped mid-request); the writer against real qemu-nbd is covered by the libvirt
 * suites (restoreDiskFrom). `onWrite` answers each WRITE: an errno, or null to drop the connection.
 */
async function server(
  o: { size: number; flags: number; onWrite?: (offset: number, length: number) => number | null } = {
    size: 1 << 20,
    flags: 1 | 4,
  },
): Promise<{ socket: string; writes: { offset: number; length: number }[]; close: () => Promise<void> }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'nbd-spec-'));
  const socket = path.join(dir, 's');
  const writes: { offset: number; length: number }[] = [];
  const srv = net.createServer((c) => {
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'option' | 'requests' = 'flags';
    const hello = Buffer.alloc(18);
    hello.write('NBDMAGIC', 0, 'latin1');
    hello.write('IHAVEOPT', 8, 'latin1');
    hello.writeUInt16BE(3, 16);
    c.write(hello);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags' && buf.length >= 4) {
          buf = buf.subarray(4);
          phase = 'option';
        } else if (phase === 'option' && buf.length >= 16) {
          buf = buf.subarray(16 + buf.readUInt32BE(12));
          const info = Buffer.alloc(10);
          info.writeBigUInt64BE(BigInt(o.size), 0);
          info.writeUInt16BE(o.flags, 8);
          c.write(info);
          phase = 'requests';
        } else if (phase === 'requests' && buf.length >= 28) {
          const type = buf.readUInt16BE(6);
          const handle = buf.subarray(8, 16);
          const offset = Number(buf.readBigUInt64BE(16));
          const length = buf.readUInt32BE(24);
          const payload = type === 1 ? length : 0;
          if (buf.length < 28 + payload) return;
          buf = buf.subarray(28 + payload);
          if (type === 2) return void c.end();
          let errno = 0;
          if (type === 1) {
            writes.push({ offset, length });
            const answer = o.onWrite ? o.onWrite(offset, length) : 0;
            if (answer === null) return void c.destroy();
            errno = answer;
          }
          const reply = Buffer.alloc(16);
          reply.writeUInt32BE(0x67446698, 0);
          reply.writeUInt32BE(errno, 4);
          handle.copy(reply, 8);
          c.write(reply);
        } else return;
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(socket, resolve));
  return {
    socket,
    writes,
    close: async () => {
      await new Promise<void>((resolve) => srv.close(() => resolve()));
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

describe('NbdWriter', () => {
  it('negotiates the export, writes in pieces of at most NBD_MAX_WRITE_BYTES, flushes and disconnects', async () => {
    const size = 3 * NBD_MAX_WRITE_BYTES;
    const s = await server({ size, flags: 1 | 4 });
    try {
      const w = await NbdWriter.connect(s.socket);
      expect(w.sizeBytes).toBe(size);
      await Promise.all([
        w.write(0, Buffer.alloc(NBD_MAX_WRITE_BYTES + 512)),
        w.write(size - 512, Buffer.alloc(512)),
      ]);
      await w.flush();
      await w.disconnect();
      expect(s.writes).toEqual([
        { offset: 0, length: NBD_MAX_WRITE_BYTES },
        { offset: NBD_MAX_WRITE_BYTES, length: 512 },
        { offset: size - 512, length: 512 },
      ]);
    } finally {
      await s.close();
    }
  });

  it('refuses a read-only export and a write outside the export', async () => {
    const ro = await server({ size: 1 << 20, flags: 1 | 2 | 4 });
    try {
      await expect(NbdWriter.connect(ro.socket)).rejects.toMatchObject({ code: 'copy_failed' });
    } finally {
      await ro.close();
    }
    const s = await server();
    try {
      const w = await NbdWriter.connect(s.socket);
      await expect(w.write((1 << 20) - 511, Buffer.alloc(512))).rejects.toMatchObject({
        code: 'copy_failed',
      });
      expect(s.writes).toEqual([]);
      w.destroy();
    } finally {
      await s.close();
    }
  });

  it("maps the server's ENOSPC to insufficient_storage and any other errno to copy_failed", async () => {
    const s = await server({ size: 1 << 20, flags: 1 | 4, onWrite: (offset) => (offset === 0 ? 28 : 5) });
    try {
      const w = await NbdWriter.connect(s.socket);
      const full = await w.write(0, Buffer.alloc(512)).catch((e: unknown) => e);
      expect(isHypervisorError(full) && full.code).toBe('insufficient_storage');
      await expect(w.write(4096, Buffer.alloc(512))).rejects.toMatchObject({ code: 'copy_failed' });
      w.destroy();
    } finally {
      await s.close();
    }
  });

  it('fails every request in flight, and every later one, when the connection drops', async () => {
    const s = await server({
      size: 1 << 20,
      flags: 1 | 4,
      onWrite: (offset) => (offset === 8192 ? null : 0),
    });
    try {
      const w = await NbdWriter.connect(s.socket);
      const results = await Promise.allSettled([0, 4096, 8192].map((at) => w.write(at, Buffer.alloc(512))));
      expect(results.at(-1)).toMatchObject({ status: 'rejected', reason: { code: 'copy_failed' } });
      await expect(w.write(0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'copy_failed' });
      await expect(w.disconnect()).rejects.toMatchObject({ code: 'copy_failed' });
    } finally {
      await s.close();
    }
  });

  it('fails to connect to a socket nobody serves, as copy_failed', async () => {
    await expect(NbdWriter.connect(path.join(os.tmpdir(), 'no-such-nbd.sock'))).rejects.toMatchObject({
      code: 'copy_failed',
    });
  });
});
