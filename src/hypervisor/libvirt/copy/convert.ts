import { classifyToolFailure } from '../errors';
import { QemuImgProgressParser } from '../parsers';
import { Toolbox } from '../tools/toolbox';

/**
 * Copies the qcow2 image `source` into a new qcow2 `dest` with `qemu-img convert` (zstd-compressed
 * when `compress`): what leaves out whatever a byte copy would carry along (internal snapshots,
 * bitmaps, a backing chain), and how a compressed snapshot is written and read back. Progress from
 * qemu-img's own `-p` output.
 */
export async function convert(
  tools: Toolbox,
  source: string,
  dest: string,
  o: {
    compress: boolean;
    signal?: AbortSignal;
    virtualSize: number;
    onPct: (pct: number) => void;
  },
): Promise<void> {
  const args = ['convert', '-p', '-f', 'qcow2', '-O', 'qcow2'];
  if (o.compress) args.push('-c', '-o', 'compression_type=zstd');
  args.push(source, dest);
  const parser = new QemuImgProgressParser(o.onPct);
  const r = await tools.qemuImg.long(
    args,
    o.virtualSize,
    { signal: o.signal, onStdout: (c) => parser.push(c) },
    'copy_failed',
  );
  if (r.code !== 0) throw classifyToolFailure(tools.qemuImg.path, args, r, 'copy_failed');
  o.onPct(100);
}
