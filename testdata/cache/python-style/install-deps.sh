#!/bin/sh
# "Installs" requirements.txt the way pip does with a cache: each requirement is fetched into the
# cache directory (/root/.cache/wheels, a RUN --mount=type=cache) unless an earlier build left it
# there, then installed into /deps. Whether a wheel came from the cache is printed ("pip-cache
# hit: NAME" / "pip-cache miss: NAME", which the tests read from the progress log) and never
# written into the image, so the layer is the same whatever the cache held.
set -eu
cache=/root/.cache/wheels
mkdir -p "$cache" /deps
while read -r req; do
  case "$req" in '' | '#'*) continue ;; esac
  name=${req%%==*}
  if [ -f "$cache/$name.whl" ]; then
    echo "pip-cache hit: $name"
  else
    echo "pip-cache miss: $name"
    printf 'wheel for %s\n' "$req" > "$cache/$name.whl"
  fi
  cp "$cache/$name.whl" "/deps/$name.whl"
done < requirements.txt

# The benchmark's big dependency: DEPS_MIB MiB, the same bytes on every build, and incompressible
# for gzip (a 1 MiB pseudo-random block repeated: deflate's 32 KiB window cannot see the repeats).
if [ "${DEPS_MIB:-0}" -gt 0 ]; then
  block=/deps/.block
  awk 'BEGIN { srand(1); for (i = 0; i < 1048576; i++) printf "%c", 1 + int(rand() * 255) }' > "$block"
  i=0
  while [ "$i" -lt "$DEPS_MIB" ]; do
    cat "$block"
    i=$((i + 1))
  done > /deps/big-dependency.bin
  rm "$block"
fi
