#!/usr/bin/env bash
# The virtual board's operating system: Debian 12 (bookworm) arm64, built from Debian's
# archive with debootstrap, for `qemu-system-aarch64 -M virt -cpu cortex-a72`
# (tools/board/vboard.py). Stands in for a fresh Raspberry Pi OS Lite (64-bit, Bookworm,
# itself Debian 12): systemd, udev, an ext4 root, the PL011 UART as /dev/ttyAMA0 with the
# /dev/serial0 link Raspberry Pi OS makes, group dialout. Nothing prebuilt is downloaded.
#
#   tools/board/build-image.sh              build (if not cached) and print the cache dir
#   tools/board/build-image.sh --print-dir  only print where the image is (or would be)
#
# Output, cached outside the repo under ${VBOARD_CACHE:-~/.cache/edge-classifier}/
# vboard-<first 16 hex of sha256 of this script> (a changed script is a new image):
#   rootfs/      the root file system tree: the "SD card" the tests install into as
#                docs/deploy.md step 2 does, then pack with mkfs.ext4 -d
#   vmlinuz initrd.img   kernel and initramfs for qemu's -kernel/-initrd
#   READY        written last; its presence means the image is complete
#
# Needs root, debootstrap, qemu-user-static (the second stage runs arm64 binaries through
# binfmt_misc, registered here by hand: a host without systemd does not do it) and the
# network to Debian's archive. ~7 min on 2 cores; ~850 MB.
set -euo pipefail
SELF="$(readlink -f "$0")"
HASH="$(sha256sum "$SELF" | cut -c1-16)"
DIR="${VBOARD_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/edge-classifier}/vboard-$HASH"
if [ "${1:-}" = "--print-dir" ]; then echo "$DIR"; exit 0; fi
if [ -e "$DIR/READY" ]; then echo "$DIR"; exit 0; fi

[ "$(id -u)" = 0 ] || { echo "build-image.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
for t in debootstrap qemu-aarch64-static mkfs.ext4; do
  command -v "$t" >/dev/null || { echo "build-image.sh: $t missing (apt-get install debootstrap qemu-user-static e2fsprogs)" >&2; exit 1; }
done

# binfmt_misc: run arm64 ELF files with the static qemu (F: opened now, so it works in the chroot).
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

# The Debian mirror the host's apt already uses (deb822 or one-line sources).
MIRROR="${VBOARD_MIRROR:-}"
if [ -z "$MIRROR" ]; then
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$MIRROR" ]; then
  MIRROR=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

mkdir -p "$DIR"
WORK="$DIR/rootfs.partial"
rm -rf "$WORK" "$DIR/rootfs"
echo "== debootstrap bookworm arm64 from $MIRROR into $WORK" >&2
t0=$(date +%s)
nice -n 10 debootstrap --arch=arm64 --variant=minbase \
  --include=systemd-sysv,udev,kmod,e2fsprogs,initramfs-tools,linux-image-cloud-arm64 \
  bookworm "$WORK" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 || {
    tail -30 "$DIR/debootstrap.log" >&2; [ -f "$WORK/debootstrap/debootstrap.log" ] && tail -30 "$WORK/debootstrap/debootstrap.log" >&2; exit 1; }
echo "   debootstrap: $(( $(date +%s) - t0 )) s" >&2

R="$WORK"
echo vboard > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vboard\n' > "$R/etc/hosts"
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' > "$R/etc/fstab"
: > "$R/etc/machine-id"        # a fresh id at first boot, like a flashed card
rm -f "$R/var/lib/dbus/machine-id"
# The driving console: root autologin on the virtio console /dev/hvc0 (not on the UART,
# which stays free for the service as on a Pi with console=serial0 removed). The getty is
# enabled explicitly: virtio_console is a module, so /dev/hvc0 appears after the getty
# generator has run.
chroot "$R" passwd -d root >/dev/null
mkdir -p "$R/etc/systemd/system/serial-getty@hvc0.service.d" "$R/etc/systemd/system/getty.target.wants"
cat > "$R/etc/systemd/system/serial-getty@hvc0.service.d/autologin.conf" <<'EOT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,38400,9600 %I $TERM
EOT
ln -sf /lib/systemd/system/serial-getty@.service "$R/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service"
# Raspberry Pi OS's udev rule (raspberrypi-sys-mods, 99-com.rules) names the GPIO UART
# /dev/serial0; the virt board's PL011 is ttyAMA0.
cat > "$R/etc/udev/rules.d/99-serial0.rules" <<'EOT'
KERNEL=="ttyAMA0", SUBSYSTEM=="tty", GROUP="dialout", MODE="0660", SYMLINK+="serial0"
EOT
# No network on the board; nothing waits for it. Under emulation every unit costs seconds
# of boot: drop the ones a headless board driven over hvc0 has no use for (Debian's gettys
# on tty2-6, the e2scrub snapshot reaper).
for u in systemd-networkd-wait-online.service getty-static.service e2scrub_reap.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
# The journal survives power cuts for the post-mortem (as Raspberry Pi OS keeps it).
mkdir -p "$R/var/log/journal"
rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"* 2>/dev/null || true

cp -L "$R/vmlinuz" "$DIR/vmlinuz"
cp -L "$R/initrd.img" "$DIR/initrd.img"
mv "$WORK" "$DIR/rootfs"
du -sh "$DIR/rootfs" >&2
echo "   total: $(( $(date +%s) - t0 )) s" >&2
date -u +%FT%TZ > "$DIR/READY"
echo "$DIR"
