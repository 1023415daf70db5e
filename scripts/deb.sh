#!/usr/bin/env bash
# `make deb`: dist/netspectra_<version>_<arch>.deb with the layout of
# `make install PREFIX=/usr` (scripts/install.sh), built with dpkg-deb.
#   deb.sh WHEEL VERSION
# Environment: PYTHON PIP (as for install.sh).
set -euo pipefail

wheel=$1 version=$2
src=$(cd "$(dirname "$0")/.." && pwd)
arch=$(dpkg --print-architecture)
stage=$src/build/deb/root
out=$src/dist/netspectra_${version}_${arch}.deb
PYTHON=${PYTHON:-/usr/bin/python3}

rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
PACKAGING=1 DESTDIR=$stage PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/usr/lib/systemd/system OPT=/opt/netspectra \
	bash "$src/scripts/install.sh" install "$wheel"
gzip -9n "$stage"/usr/share/man/man1/*.1  # Debian policy: compressed man pages

# The venv is bound to this python3 minor version (its lib/pythonX.Y, the extension's ABI).
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
next=$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
# Headers for bcc: the distribution's meta package for the running flavour
# (Debian: linux-headers-<arch>, Ubuntu: linux-headers-generic).
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@PYVER@|$pyver|" -e "s|@PYNEXT@|$next|" \
	-e "s|@SIZE@|$(du -sk --exclude=DEBIAN "$stage" | cut -f1)|" \
	"$src/packaging/debian/control.in" >"$stage/DEBIAN/control"
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) >"$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 755 "$src/packaging/debian/$s" "$stage/DEBIAN/$s"; done

mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$stage" "$out" >/dev/null
echo "deb: $out"
