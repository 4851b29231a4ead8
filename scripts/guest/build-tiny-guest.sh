#!/usr/bin/env bash
# Builds the tiny real Linux guest used by the libvirt driver tests and by the `npm run local` demo
# server: a Debian cloud kernel plus an initramfs with busybox, the virtio modules, the QEMU guest
# agent and busybox acpid. Nothing is installed on the host: the Debian packages are fetched with
# `apt-get download` and unpacked with `dpkg -x`; qemu-ga's shared libraries are copied from the host
# (they are there because qemu-system-x86 depends on them).
#
# Usage: scripts/guest/build-tiny-guest.sh [OUTDIR]
#   (default: this checkout's GUEST_DIR from scripts/paths.sh, which QEMU's user can reach; an OUTDIR
#   of your own must be reachable by libvirt-qemu too)
# Output: OUTDIR/vmlinuz, OUTDIR/initrd.img, OUTDIR/BUILD-ID. Cached: does nothing when they exist
# (set REBUILD=1 to force).
#
# What the guest does (see /init below):
#   - mounts proc, sys, devtmpfs; loads the virtio/button/evdev modules;
#   - mounts every virtio disk that holds ext4 at /mnt/<vdX> (read-write);
#   - starts qemu-ga on the port named org.qemu.guest_agent.0 (when the domain has that channel)
#     and busybox acpid for the ACPI power button;
#   - kernel parameter `tinyguest.writer=vdb` starts a writer that keeps writing files to /mnt/vdb;
#   - prints `TINYGUEST READY` on the serial console;
#   - power button, or qemu-ga's guest-shutdown (/sbin/shutdown): stop the writer, sync, unmount,
#     poweroff -f.
set -euo pipefail

if [[ -n "${1:-}" ]]; then
  OUT="$1"
else
  # shellcheck source=../paths.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../paths.sh"
  ensure_images_dir
  OUT="$GUEST_DIR"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [[ -z "${REBUILD:-}" && -s "$OUT/vmlinuz" && -s "$OUT/initrd.img" && -s "$OUT/BUILD-ID" ]]; then
  echo "tiny guest: cached in $OUT"
  exit 0
fi

for tool in apt-get apt-cache dpkg ldd gzip; do
  command -v "$tool" >/dev/null || { echo "build-tiny-guest: missing host tool: $tool" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vpstest-guest-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
cd "$WORK"

# --- 1. packages -----------------------------------------------------------------------------------
# The cloud kernel boots ~2.5x faster under TCG than the generic one and has ext4 built in.
resolve_kernel() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
KPKG="$(resolve_kernel)"
if [[ -z "$KPKG" && "$(id -u)" = 0 ]]; then
  # A fresh machine may have no package lists yet.
  apt-get update -qq >/dev/null 2>&1 || true
  KPKG="$(resolve_kernel)"
fi
if [[ -z "$KPKG" ]]; then
  echo "build-tiny-guest: cannot resolve linux-image-cloud-amd64 (run apt-get update?)" >&2
  exit 1
fi
mkdir -p debs
(cd debs && apt-get download "$KPKG" busybox-static qemu-guest-agent >/dev/null 2>apt.err) || {
  cat debs/apt.err >&2
  exit 1
}
mkdir -p x
for deb in debs/*.deb; do dpkg -x "$deb" x; done

KVER="$(ls x/lib/modules | head -n1)"
BB="$WORK/x/bin/busybox"
[[ -x "$BB" ]] || { echo "build-tiny-guest: busybox-static did not unpack" >&2; exit 1; }

# --- 2. initramfs tree -----------------------------------------------------------------------------
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,etc/acpi/PWRF,proc,sys,dev,mnt,tmp,run,var/run,var/log,lib/modules,lib64,usr/bin,usr/sbin}
cp "$BB" "$R/bin/busybox"
for applet in $("$BB" --list); do
  case "$applet" in
    busybox | shutdown) ;;
    *) ln -sf busybox "$R/bin/$applet" ;;
  esac
done

# Modules the kernel lacks, with their dependencies resolved from modules.dep (generated here with
# busybox depmod, since the package ships none), in load order.
MODROOT="$WORK/x/lib/modules/$KVER"
"$BB" depmod -b "$WORK/x" "$KVER"
declare -A SEEN=()
ORDER=()
resolve() {
  local name="$1" line path dep
  line="$(grep -E "(^|/)${name}\.ko(\.[a-z]+)?:" "$MODROOT/modules.dep" | head -n1 || true)"
  if [[ -z "$line" ]]; then
    if grep -qE "/${name}\.ko" "$MODROOT/modules.builtin"; then return 0; fi
    echo "build-tiny-guest: module $name not found" >&2
    exit 1
  fi
  path="${line%%:*}"
  [[ -n "${SEEN[$path]:-}" ]] && return 0
  SEEN[$path]=1
  for dep in ${line#*:}; do
    dep="$(basename "$dep")"
    resolve "${dep%%.ko*}"
  done
  ORDER+=("$path")
}
for m in virtio_pci virtio_blk virtio_console button evdev; do resolve "$m"; done
: >"$R/etc/modules"
for path in "${ORDER[@]}"; do
  src="$MODROOT/$path"
  [[ "$path" = /* ]] && src="$WORK/x$path"
  base="$(basename "$path")"
  case "$base" in
    *.ko.xz) xz -dc "$src" >"$R/lib/modules/${base%.xz}"; base="${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$src" >"$R/lib/modules/${base%.zst}"; base="${base%.zst}" ;;
    *) cp "$src" "$R/lib/modules/$base" ;;
  esac
  echo "$base" >>"$R/etc/modules"
done

# qemu-ga and its shared libraries, taken from the host.
GA="$WORK/x/usr/sbin/qemu-ga"
cp "$GA" "$R/usr/sbin/qemu-ga"
ldd "$GA" | awk '/=> \// {print $3} /^\s*\/lib/ {print $1}' | sort -u | while read -r lib; do
  [[ -f "$lib" ]] || { echo "build-tiny-guest: host lacks $lib (install qemu-system-x86)" >&2; exit 1; }
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done
# The dynamic loader at its canonical path.
if [[ -f /lib64/ld-linux-x86-64.so.2 ]]; then cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"; fi

cat >"$R/etc/stop-guest" <<'EOF'
#!/bin/sh
# Orderly power-off: stop writers, flush, unmount, power off. Runs once.
mkdir /run/stopping 2>/dev/null || exit 0
echo "TINYGUEST STOPPING" >/dev/console
[ -f /run/writer.pid ] && kill "$(cat /run/writer.pid)" 2>/dev/null
sleep 0.2
sync
for m in $(awk '$2 ~ /^\/mnt\// {print $2}' /proc/mounts); do
  umount "$m" || mount -o remount,ro "$m"
done
sync
echo "TINYGUEST POWEROFF" >/dev/console
poweroff -f
EOF
chmod 755 "$R/etc/stop-guest"

# qemu-ga's guest-shutdown runs /sbin/shutdown -h -P +0 "...": answer at once, power off behind it.
cat >"$R/sbin/shutdown" <<'EOF'
#!/bin/sh
setsid /etc/stop-guest </dev/null >/dev/null 2>&1 &
exit 0
EOF
chmod 755 "$R/sbin/shutdown"

# busybox acpid runs ./PWRF/00000080 (relative to /etc/acpi) for the power button event.
cat >"$R/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
exec /etc/stop-guest
EOF
chmod 755 "$R/etc/acpi/PWRF/00000080"

cat >"$R/etc/writer" <<'EOF'
#!/bin/sh
# Keeps the filesystem busy: small files written and overwritten in a loop.
dir="$1"
echo $$ >/run/writer.pid
i=0
while :; do
  dd if=/dev/urandom of="$dir/w$i.tmp" bs=4k count=8 2>/dev/null && mv "$dir/w$i.tmp" "$dir/w$i"
  i=$(( (i + 1) % 64 ))
done
EOF
chmod 755 "$R/etc/writer"

cat >"$R/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mkdir -p /dev/pts /run /tmp /var/run
for m in $(cat /etc/modules); do insmod "/lib/modules/$m" 2>/dev/null; done
# Wait (briefly) for the virtio disks to show up.
n=0
while [ ! -e /sys/block/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
for b in /sys/block/vd*; do
  [ -e "$b" ] || continue
  d="${b##*/}"
  [ -b "/dev/$d" ] || mknod "/dev/$d" b $(tr ':' ' ' <"$b/dev")
  mkdir -p "/mnt/$d"
  if mount -t ext4 "/dev/$d" "/mnt/$d" 2>/dev/null; then echo "TINYGUEST MOUNTED $d"; else rmdir "/mnt/$d"; fi
done
# The guest agent's port: found through sysfs, device node made by hand when devtmpfs did not.
for p in /sys/class/virtio-ports/*; do
  [ -e "$p/name" ] || continue
  if [ "$(cat "$p/name")" = "org.qemu.guest_agent.0" ]; then
    port="${p##*/}"
    [ -c "/dev/$port" ] || mknod "/dev/$port" c $(tr ':' ' ' <"$p/dev")
    qemu-ga -m virtio-serial -p "/dev/$port" -t /run -d -f /run/qemu-ga.pid && echo "TINYGUEST AGENT $port"
  fi
done
acpid -c /etc/acpi -l /var/log/acpid.log
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    tinyguest.writer=*)
      d="${arg#tinyguest.writer=}"
      if [ -d "/mnt/$d" ]; then setsid /etc/writer "/mnt/$d" </dev/null >/dev/null 2>&1 & echo "TINYGUEST WRITER $d"; fi
      ;;
  esac
done
echo "TINYGUEST READY"
# PID 1 stays here and reaps orphans.
while :; do wait; sleep 1; done
EOF
chmod 755 "$R/init"

# --- 3. pack ---------------------------------------------------------------------------------------
(cd "$R" && find . | "$BB" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -6 >"$WORK/initrd.img"
cp "$WORK/x/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
mv "$WORK/initrd.img" "$OUT/initrd.img.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
chmod 644 "$OUT/vmlinuz" "$OUT/initrd.img"
echo "$KVER $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$OUT/BUILD-ID"
echo "tiny guest: built in $OUT (kernel $KVER, initrd $(du -h "$OUT/initrd.img" | cut -f1))"
