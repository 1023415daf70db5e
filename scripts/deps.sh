#!/usr/bin/env bash
# Install what netspectra needs from the distribution (Debian/Ubuntu), as root.
#
# bcc compiles netspectra/bpf/sensor.c at start and needs kernel headers under
# /lib/modules/$(uname -r)/build.  When the distribution packages no headers for
# the running kernel (custom or newer kernels), install the distribution's
# generic headers and point the running release's modules directory at them:
# the XDP program uses only UAPI headers, which are stable across releases.
set -euo pipefail

release=$(uname -r)
pkgs=(python3-bpfcc python3-venv libbpf1 iproute2 procps tcpreplay tshark nfdump prometheus prometheus-alertmanager)
need=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done

headers_ok() { [ -d "/lib/modules/$release/build/include" ]; }

if ! headers_ok; then
	if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
		need+=("linux-headers-$release")
	else
		need+=("linux-headers-$(dpkg --print-architecture)")
	fi
fi

if [ ${#need[@]} -gt 0 ]; then
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# The generic-headers case needs the package list before apt-cache can see it.
	if ! headers_ok && apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
		need=("${need[@]/linux-headers-$(dpkg --print-architecture)/linux-headers-$release}")
	fi
	apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

if ! headers_ok; then
	# Newest installed headers with a build/ link, e.g. /lib/modules/6.1.0-56-amd64.
	src=$(ls -d /lib/modules/*/build/include 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -z "$src" ]; then
		echo "deps: no kernel headers found after install; cannot build the XDP program" >&2
		exit 1
	fi
	src=$(dirname "$(dirname "$src")")
	if [ -e "/lib/modules/$release" ] && [ ! -L "/lib/modules/$release" ]; then
		ln -sfn "$src/build" "/lib/modules/$release/build"
	else
		ln -sfn "$src" "/lib/modules/$release"
	fi
	echo "deps: no headers packaged for $release; using $(basename "$src") (UAPI only)"
fi
echo "deps: ok (bcc $(dpkg-query -W -f='${Version}' python3-bpfcc), headers $(readlink -f "/lib/modules/$release/build"))"
