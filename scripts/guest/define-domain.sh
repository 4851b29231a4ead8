#!/usr/bin/env bash
# Defines (does not start) a libvirt domain that boots the tiny guest built by build-tiny-guest.sh.
#
# Usage: scripts/guest/define-domain.sh NAME DISK GUESTDIR [options]
#   NAME              domain name
#   DISK              the server's qcow2 disk (vda); ext4 inside is mounted at /mnt/vda by the guest
#   GUESTDIR          folder holding vmlinuz and initrd.img (build-tiny-guest.sh's output)
# Options:
#   --with-agent      (default) add the QEMU guest agent channel (org.qemu.guest_agent.0)
#   --no-agent        no guest agent channel: quiesce impossible, shutdown goes through ACPI
#   --data-disk PATH  a second qcow2 disk (vdb)
#   --writer DEV      the guest keeps writing files to /mnt/DEV (e.g. vda)
#   --serial PATH     serial console log file (default: DISK's folder/NAME.serial.log)
#   --memory MIB      guest memory (default 160)
#   --uri URI         libvirt connection (default: $LIBVIRT_URI or qemu:///system)
#   --xml-only        print the XML instead of defining it
set -euo pipefail

usage() { sed -n '2,20p' "$0" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
NAME="$1" DISK="$2" GUESTDIR="$3"
shift 3
AGENT=1 DATA="" WRITER="" SERIAL="" MEMORY=160 URI="${LIBVIRT_URI:-qemu:///system}" XMLONLY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --with-agent) AGENT=1 ;;
    --no-agent) AGENT="" ;;
    --data-disk) DATA="$2"; shift ;;
    --writer) WRITER="$2"; shift ;;
    --serial) SERIAL="$2"; shift ;;
    --memory) MEMORY="$2"; shift ;;
    --uri) URI="$2"; shift ;;
    --xml-only) XMLONLY=1 ;;
    *) usage ;;
  esac
  shift
done

abspath() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
DISK="$(abspath "$DISK")"
GUESTDIR="$(cd "$GUESTDIR" && pwd)"
[[ -n "$DATA" ]] && DATA="$(abspath "$DATA")"
[[ -n "$SERIAL" ]] || SERIAL="$(dirname "$DISK")/$NAME.serial.log"
SERIAL="$(abspath "$SERIAL")"

# Values go into XML attributes unescaped: refuse anything that would need escaping.
for v in "$NAME" "$DISK" "$GUESTDIR" "$DATA" "$SERIAL" "$WRITER" "$MEMORY"; do
  if [[ "$v" == *[\'\"\<\>\&]* ]]; then
    echo "define-domain: refusing value with XML special characters: $v" >&2
    exit 2
  fi
done
[[ "$MEMORY" =~ ^[0-9]+$ ]] || usage
for f in "$DISK" "$GUESTDIR/vmlinuz" "$GUESTDIR/initrd.img" ${DATA:+"$DATA"}; do
  [[ -f "$f" ]] || { echo "define-domain: missing $f" >&2; exit 1; }
done

CMDLINE="console=ttyS0 quiet"
[[ -n "$WRITER" ]] && CMDLINE="$CMDLINE tinyguest.writer=$WRITER"

disk_xml() {
  cat <<EOF
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='$1'/>
      <target dev='$2' bus='virtio'/>
    </disk>
EOF
}

XML="$(
  cat <<EOF
<domain type='qemu'>
  <name>$NAME</name>
  <memory unit='MiB'>$MEMORY</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUESTDIR/vmlinuz</kernel>
    <initrd>$GUESTDIR/initrd.img</initrd>
    <cmdline>$CMDLINE</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
$(disk_xml "$DISK" vda)
$([[ -n "$DATA" ]] && disk_xml "$DATA" vdb)
    <serial type='file'>
      <source path='$SERIAL'/>
      <target port='0'/>
    </serial>
$([[ -n "$AGENT" ]] && cat <<'AG'
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
AG
)
    <memballoon model='none'/>
  </devices>
</domain>
EOF
)"

if [[ -n "$XMLONLY" ]]; then
  echo "$XML"
  exit 0
fi
TMPXML="$(mktemp "${TMPDIR:-/tmp}/vpstest-domain.XXXXXX.xml")"
trap 'rm -f "$TMPXML"' EXIT
echo "$XML" >"$TMPXML"
virsh -q -c "$URI" define "$TMPXML" >/dev/null
echo "defined $NAME"
