#!/usr/bin/env bash
# Where this checkout keeps what other OS users must reach: the PostgreSQL data directory (read by the
# `postgres` user when run as root) and the images QEMU opens (run by the `libvirt-qemu` user). Never
# under the checkout itself: a checkout may sit in a home directory of mode 0700 (/root) that those
# users cannot traverse. One directory per checkout, named by a short hash of its physical path, so
# two checkouts never share (or remove) each other's state.
#
#   as root   LOCAL_STATE_DIR = /var/lib/admin-vps/<id>
#             IMAGES_DIR      = /var/lib/libvirt/images/admin-vps-<id>   (libvirt's own image folder)
#   not root  LOCAL_STATE_DIR = ${XDG_STATE_HOME:-~/.local/state}/admin-vps/<id>
#             IMAGES_DIR      = $LOCAL_STATE_DIR/images
#             SERVICES_DIR    = $LOCAL_STATE_DIR/services (both users)
#             GUEST_DIR       = $IMAGES_DIR/guest (the tiny guest's kernel and initramfs)
#
# SERVICES_DIR and IMAGES_DIR may be set to other places. A checkout whose services ran from
# <checkout>/.local/services before this layout (a PostgreSQL cluster there) keeps using it.
#
# Run:    scripts/paths.sh                 prints KEY=value lines (value = rest of the line):
#                                          CHECKOUT_DIR, CHECKOUT_ID, LOCAL_STATE_DIR, SERVICES_DIR,
#                                          IMAGES_DIR, GUEST_DIR
#         scripts/paths.sh ensure-images   creates IMAGES_DIR (and checks libvirt-qemu reaches it),
#                                          then prints the same lines
# Source: defines those variables and the functions below (ensure_state_dir, ensure_images_dir).
set -euo pipefail

CHECKOUT_DIR="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "$CHECKOUT_DIR" == *$'\n'* ]]; then
  echo "paths: the checkout path contains a newline: $CHECKOUT_DIR" >&2
  exit 2
fi
CHECKOUT_ID="$(printf '%s' "$CHECKOUT_DIR" | sha256sum | cut -c1-12)"
# The QEMU user of Debian's libvirt (qemu.conf `user`); it must traverse to every image.
QEMU_USER=libvirt-qemu

if [ "$(id -u)" -eq 0 ]; then
  LOCAL_STATE_DIR="/var/lib/admin-vps/$CHECKOUT_ID"
  _default_images="/var/lib/libvirt/images/admin-vps-$CHECKOUT_ID"
else
  LOCAL_STATE_DIR="${XDG_STATE_HOME:-${HOME:?neither XDG_STATE_HOME nor HOME is set}/.local/state}/admin-vps/$CHECKOUT_ID"
  _default_images="$LOCAL_STATE_DIR/images"
fi
_legacy_services="$CHECKOUT_DIR/.local/services"
if [ -z "${SERVICES_DIR:-}" ] && [ -f "$_legacy_services/postgres/data/PG_VERSION" ]; then
  SERVICES_DIR="$_legacy_services"
  SERVICES_DIR_IS_LEGACY=1
fi
SERVICES_DIR="${SERVICES_DIR:-$LOCAL_STATE_DIR/services}"
IMAGES_DIR="${IMAGES_DIR:-$_default_images}"
GUEST_DIR="$IMAGES_DIR/guest"
SERVICES_DIR_IS_LEGACY="${SERVICES_DIR_IS_LEGACY:-0}"
# Marks a directory these scripts created for this checkout (what `services.sh purge` may remove).
OWNER_MARK=.admin-vps-checkout

# Creates DIR (and missing parents, 0755) with MODE; a directory that exists keeps its mode.
_make_dir() { # dir mode
  [ -d "$1" ] && return 0
  (umask 022 && mkdir -p "$1")
  chmod "$2" "$1"
}

_mark() { # dir: records which checkout made it (purge checks this before removing anything)
  [ -f "$1/$OWNER_MARK" ] || printf '%s\n' "$CHECKOUT_DIR" >"$1/$OWNER_MARK"
}

# The state directory: traversable (not listable) by the service users, so Postgres reaches its data.
ensure_state_dir() {
  _make_dir "$LOCAL_STATE_DIR" 0711
  _mark "$LOCAL_STATE_DIR"
}

# The images directory, and proof that QEMU's user can traverse to it.
ensure_images_dir() {
  _make_dir "$IMAGES_DIR" 0711
  [ "$IMAGES_DIR" = "$_default_images" ] && _mark "$IMAGES_DIR"
  id -u "$QEMU_USER" >/dev/null 2>&1 || return 0 # no libvirt here: nobody else needs to reach it
  local unreachable=""
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$QEMU_USER" -- test -x "$IMAGES_DIR" || unreachable=1
  else
    # Not root: QEMU's user is neither owner nor group of our directories, so each needs o+x.
    local d="$IMAGES_DIR"
    while [ "$d" != / ]; do
      [ "$(stat -c %A "$d" | cut -c10)" = x ] || [ "$(stat -c %A "$d" | cut -c10)" = t ] || unreachable=1
      d="$(dirname "$d")"
    done
  fi
  if [ -n "$unreachable" ]; then
    echo "paths: $QEMU_USER cannot reach $IMAGES_DIR (a parent directory lacks o+x); set IMAGES_DIR to a directory it can reach" >&2
    return 1
  fi
}

print_paths() {
  printf 'CHECKOUT_DIR=%s\nCHECKOUT_ID=%s\nLOCAL_STATE_DIR=%s\nSERVICES_DIR=%s\nIMAGES_DIR=%s\nGUEST_DIR=%s\n' \
    "$CHECKOUT_DIR" "$CHECKOUT_ID" "$LOCAL_STATE_DIR" "$SERVICES_DIR" "$IMAGES_DIR" "$GUEST_DIR"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    "") ;;
    ensure-images) ensure_images_dir ;;
    *)
      echo "usage: $0 [ensure-images]" >&2
      exit 2
      ;;
  esac
  print_paths
fi
