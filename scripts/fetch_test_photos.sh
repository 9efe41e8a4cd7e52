#!/usr/bin/env bash
# Fetch the real test photos of the face-extras tests into cache/test_photos/ (git-ignored; not committed):
# the face_recognition 1.3.0 source package's tests/test_images (Obama x3, Biden; MIT package, White House
# photos). scikit-image's astronaut and matplotlib's grace_hopper.jpg come with those packages.
#   bash scripts/fetch_test_photos.sh [DEST]      (DEST default: cache/test_photos; tests read
#                                                  $FACEDIS_TEST_PHOTOS, else cache/test_photos)
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-cache/test_photos}"
if [ -f "$dest/obama.jpg" ] && [ -f "$dest/biden.jpg" ]; then
  echo "test photos already in $dest"; exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: face-recognition==1.3.0 -d "$tmp"
tar xzf "$tmp"/face_recognition-1.3.0.tar.gz -C "$tmp" face_recognition-1.3.0/tests/test_images
mkdir -p "$dest"
cp "$tmp"/face_recognition-1.3.0/tests/test_images/* "$dest"/
echo "wrote $(ls "$dest" | wc -l) test photos to $dest"
