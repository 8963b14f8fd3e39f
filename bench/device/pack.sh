#!/usr/bin/env bash
# Pack what a GPU job needs (models, caches, wheels) into pieces that fit the device tool's 64 MiB
# working-tree limit (run here, on the machine with the model cache).
#
#   LATENTSTUDIO_HOME=... bash bench/device/pack.sh NAME=ITEM,ITEM ... [NAME=...]
#
# ITEM: a model key (its folder in $LATENTSTUDIO_HOME/models), a path under $LATENTSTUDIO_HOME
# (cache/bench_photos), or a wheel file. Each NAME becomes one xz archive, in order; the archives
# are concatenated and cut into pieces .p0/piece, .p1/piece, … of PIECE_MB (default 52) MiB, plus
# .xfer/archives.env (name, size, sha256 per archive). Call N of the device carries .xfer and .pN
# and runs `bash bench/device/recv.sh N`; an archive is unpacked as soon as its bytes are all there.
# The .dat twin of dlib_resnet is left out (nothing on the device reads it; 22 MB).
set -euo pipefail
HOME_DIR="${LATENTSTUDIO_HOME:?set LATENTSTUDIO_HOME}"
PIECE_MB="${PIECE_MB:-52}"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p .xfer
: > .xfer/archives.env
for group in "$@"; do
  name="${group%%=*}"
  mkdir -p "$STAGE/$name/home/models"
  IFS=, read -ra items <<< "${group#*=}"
  for item in "${items[@]}"; do
    if [ -f "$item" ]; then cp "$item" "$STAGE/$name/"
    elif [ -d "$HOME_DIR/models/$item" ]; then
      cp -r "$HOME_DIR/models/$item" "$STAGE/$name/home/models/"
      rm -f "$STAGE/$name/home/models/$item/dlib_face_recognition_resnet_model_v1.dat"
    elif [ -e "$HOME_DIR/$item" ]; then
      mkdir -p "$STAGE/$name/home/$(dirname "$item")"; cp -r "$HOME_DIR/$item" "$STAGE/$name/home/$item"
    else echo "pack: no such model, path or wheel: $item" >&2; exit 2
    fi
  done
  (cd "$STAGE/$name" && tar cf - . | xz -9 -T0 > "$STAGE/$name.tar.xz")
  echo "$name $(stat -c %s "$STAGE/$name.tar.xz") $(sha256sum < "$STAGE/$name.tar.xz" | cut -d' ' -f1)" >> .xfer/archives.env
done
rm -rf .p[0-9]*
cut -d' ' -f1 .xfer/archives.env | sed "s|.*|$STAGE/&.tar.xz|" | xargs cat | split -b "${PIECE_MB}M" -d -a 3 - "$STAGE/piece"
for f in "$STAGE"/piece*; do n=$((10#${f##*piece})); mkdir -p ".p$n"; mv "$f" ".p$n/piece"; done
cat .xfer/archives.env; ls -d .p[0-9]*
