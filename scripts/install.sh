#!/usr/bin/env bash
# `make install` / `make uninstall` / the tree of `make deb`, as root.
#
#   install.sh install WHEEL    isolated venv at $OPT with WHEEL and its dependencies,
#                               commands linked into $PREFIX/bin, systemd unit, example
#                               configs (never overwriting), docs, man pages
#   install.sh uninstall        remove exactly what the manifest of the last install lists
#
# DESTDIR stages the tree elsewhere; everything written into it refers to the
# final paths (shebangs, pyvenv.cfg, .pyc source paths, the unit), as
# dh-virtualenv does, so the staged tree can be copied or packaged as is.
# Environment: DESTDIR PREFIX OPT SYSCONFDIR UNITDIR PYTHON PIP PACKAGING
# (PACKAGING=1: a package manager tracks the files; write no manifest).
set -euo pipefail

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
OPT=${OPT:-/opt/netspectra}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
PYTHON=${PYTHON:-/usr/bin/python3}
PIP=${PIP:-pip}  # may be a command line, e.g. "python -m pip"
PACKAGING=${PACKAGING:-}
DOCDIR=$PREFIX/share/doc/netspectra
MANDIR=$PREFIX/share/man/man1
MANIFEST=$OPT/install-manifest
src=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "install: $*" >&2; exit 1; }

declare -a made=()
# mkdir -p that remembers the directories it created (final paths), so
# uninstall removes those and never a directory that was there before
mkdirs() {
	local d=$1 missing=()
	[ -z "$DESTDIR" ] || mkdir -p "$DESTDIR"
	while [ "$d" != / ] && [ ! -d "$DESTDIR$d" ]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
	for d in "${missing[@]}"; do mkdir -m 755 "$DESTDIR$d"; made+=("$d/"); done
	return 0
}
put() { # put MODE SRC DEST: install a file (final path DEST)
	mkdirs "$(dirname "$3")"
	install -m "$1" "$2" "$DESTDIR$3"
	made+=("$3")
}
put_new() { # put, unless the admin already has that file
	if [ -e "$DESTDIR$3" ]; then echo "install: keeping existing $3"; else put "$@"; fi
}

do_install() {
	local wheel=$1 env=$DESTDIR$OPT
	[ -f "$wheel" ] || die "no wheel at $wheel (make wheel)"
	if [ -e "$env" ]; then
		[ -z "$PACKAGING" ] && [ -f "$DESTDIR$MANIFEST" ] || die "$env exists and is not a netspectra install: move it away"
		do_uninstall
	fi
	"$PYTHON" -c 'import venv' 2>/dev/null || die "$PYTHON cannot create venvs: apt-get install python3-venv"

	mkdirs "$OPT"
	# No pip inside: the environment is the package's, not a place to add things.
	"$PYTHON" -m venv --without-pip "$env"
	$PIP --python "$env/bin/python" install -q --no-compile --disable-pip-version-check "$wheel"
	# Man pages from the installed commands themselves (build-time, never committed).
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	"$env/bin/python" "$src/scripts/gen_man.py" "$tmp/man"
	"$env/bin/netspectra-sensor" config --print-defaults >"$tmp/sensor.yaml.example"

	# Relocate: the venv was built at $env, it runs at $OPT.
	if [ -n "$DESTDIR" ]; then
		grep -rlI --null -F "$env" "$env/bin" | xargs -0 -r sed -i "s|$env|$OPT|g"
		sed -i "s|$env|$OPT|g" "$env/pyvenv.cfg"
	fi
	# Compile now (as the final paths) so running as root never writes .pyc into $OPT.
	"$env/bin/python" -m compileall -q -j 0 ${DESTDIR:+-s "$DESTDIR" -p /} "$env/lib" >/dev/null
	while IFS= read -r -d '' f; do made+=("${f#"$DESTDIR"}"); done < <(find "$env" -mindepth 1 \( -type f -o -type l \) -print0)
	while IFS= read -r -d '' d; do made+=("${d#"$DESTDIR"}/"); done < <(find "$env" -mindepth 1 -type d -print0)

	mkdirs "$PREFIX/bin"
	for cmd in netspectra netspectra-sensor; do
		ln -sfn "$OPT/bin/$cmd" "$DESTDIR$PREFIX/bin/$cmd"
		made+=("$PREFIX/bin/$cmd")
	done

	sed -e "s|@OPT@|$OPT|g" -e "s|@DOCDIR@|$DOCDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" \
		"$src/exporters/systemd/netspectra-sensor@.service.in" >"$tmp/netspectra-sensor@.service"
	put 644 "$tmp/netspectra-sensor@.service" "$UNITDIR/netspectra-sensor@.service"

	put_new 644 "$tmp/sensor.yaml.example" "$SYSCONFDIR/netspectra/sensor.yaml.example"
	put_new 644 "$src/exporters/systemd/netspectra-sensor.default" "$SYSCONFDIR/default/netspectra-sensor"

	put 644 "$src/README.md" "$DOCDIR/README.md"
	for f in "$src"/docs/*.md; do put 644 "$f" "$DOCDIR/$(basename "$f")"; done
	while IFS= read -r -d '' f; do
		put 644 "$f" "$DOCDIR/exporters/${f#"$src/exporters/"}"
	done < <(find "$src/exporters" -type f -print0 | sort -z)
	for f in "$tmp"/man/*.1; do put 644 "$f" "$MANDIR/$(basename "$f")"; done

	if [ -z "$PACKAGING" ]; then
		printf '%s\n' "${made[@]}" "$MANIFEST" | sort -u >"$DESTDIR$MANIFEST"
		echo "install: netspectra in $OPT, commands in $PREFIX/bin (manifest $MANIFEST)"
	fi
}

do_uninstall() {
	[ -f "$DESTDIR$MANIFEST" ] || die "nothing to uninstall: no $MANIFEST"
	# Files first, then directories deepest first, each only if now empty.
	local p entries
	mapfile -t entries <"$DESTDIR$MANIFEST"
	printf '%s\n' "${entries[@]}" | grep -v '/$' | sed "s|^|$DESTDIR|" | xargs -r -d '\n' rm -f
	printf '%s\n' "${entries[@]}" | grep '/$' | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- |
		while IFS= read -r p; do rmdir "$DESTDIR${p%/}" 2>/dev/null || true; done
	echo "install: removed netspectra from $OPT and $PREFIX"
}

case ${1:-} in
install) do_install "${2:?wheel}" ;;
uninstall) do_uninstall ;;
*) die "usage: install.sh install WHEEL | uninstall" ;;
esac
