#!/bin/sh
# Writes a root filesystem tarball of busybox-static (sh, awk and friends), with /etc/passwd,
# /share and /app, to the path given: the base of every image Berth builds without a registry.
# Extra files: EXTRA_DIR=dir copies dir's contents over the root before packing.
set -eu
out=${1:?usage: busybox-rootfs.sh OUT.tar}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "error: busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
case "$(file -L "$busybox" 2>/dev/null)" in
  *"statically linked"*|"") ;;
  *) echo "error: $busybox is not statically linked (apt-get install busybox-static)" >&2; exit 1 ;;
esac
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/share" "$root/app"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
if [ -n "${EXTRA_DIR:-}" ]; then cp -a "$EXTRA_DIR"/. "$root/"; fi
tar -C "$root" --owner=0 --group=0 --numeric-owner -cf "$out" .
