#!/usr/bin/env bash
# The Debian packages whose tools the project uses: Tesseract OCR with its Russian and English data (order
# screenshots) and the DejaVu fonts (the tests render screenshots with them). Installed where missing, as
# root with apt-get; elsewhere this says what is missing and how to install it, and setup goes on: the bot
# then answers a picture with "send it as text" (or reads its caption), and the OCR tests say what is missing.
set -u
missing=()
if command -v tesseract >/dev/null 2>&1; then
  langs=$(tesseract --list-langs 2>/dev/null || true)
  grep -qx rus <<<"$langs" || missing+=(tesseract-ocr-rus)
  grep -qx eng <<<"$langs" || missing+=(tesseract-ocr-eng)
else
  missing+=(tesseract-ocr tesseract-ocr-rus tesseract-ocr-eng)
fi
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "warning: apt-get could not install ${missing[*]}" >&2
else
  echo "warning: missing Debian packages: ${missing[*]} (installing needs root and apt-get)" >&2
fi
echo "  order screenshots are not read until they are installed: apt-get install -y ${missing[*]}" >&2
echo "  (as root; see docs/screenshots.md). Everything else works." >&2
exit 0
