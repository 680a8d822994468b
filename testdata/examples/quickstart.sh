#!/usr/bin/env bash
# Quick start: builds the bundled example into OCI images with rbuild, on a fresh machine.
#  1. builds rbuild (release);
#  2. makes a busybox base image from Debian's busybox-static, with rbuild itself (FROM scratch);
#  3. builds the example's development and production targets in one run, into an OCI layout
#     at ./rbuild-example-out (inspect it with `skopeo inspect oci:rbuild-example-out:production`).
# The store goes to $RBUILD_STORE (default ~/.cache/rbuild).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$PWD/rbuild-example-out}

if ! command -v busybox >/dev/null 2>&1 || ! busybox --list >/dev/null 2>&1; then
  echo "==> installing busybox-static (for the example's base image)"
  if [ "$(id -u)" -ne 0 ]; then echo "run as root, or install busybox-static first" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi

echo "==> building rbuild"
cargo build --release --locked -q --manifest-path "$root/Cargo.toml" -p rbuild
rbuild="$root/target/release/rbuild"

echo "==> making the base image localhost/rbuild-examples/busybox:stable (FROM scratch)"
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
mkdir -p "$base/rootfs/bin" "$base/rootfs/etc" "$base/rootfs/tmp" "$base/rootfs/home/app"
cp "$(command -v busybox)" "$base/rootfs/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$base/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$base/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$base/rootfs/etc/group"
cat > "$base/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/sh"]
DOCKERFILE
SOURCE_DATE_EPOCH=0 "$rbuild" build "$base" --progress plain --tag localhost/rbuild-examples/busybox:stable

echo "==> building the example: development and production targets"
rm -rf "$out"
"$rbuild" build "$here/hello-web" --progress plain \
  --target development --target production \
  --tag localhost/hello-web:1.0 \
  --output "type=oci,dest=$out,tar=false"
echo
echo "OCI image layout written to $out:"
python3 -c 'import json,sys; [print("  ", m["annotations"].get("org.opencontainers.image.ref.name"), m["digest"]) for m in json.load(open(sys.argv[1]))["manifests"]]' "$out/index.json"
