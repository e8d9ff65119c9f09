# The README's commands, as written, on a fresh Debian 12: a minimal
# bookworm made with debootstrap (as tools/base-image.sh makes the e2e base
# image), with nothing installed but what the README asks for
# (`apt-get install -y git make`). In it: clone this commit, run `make run`
# and send a real HTTP request from inside the chroot to the gateway on
# 127.0.0.1:8080, stop it, then run `make test` (the whole suite).
#
# Sourced by e2e/run.sh (pass/fail/check from e2e/lib.sh). Needs root (a
# chroot and mounts) and Debian's package registry. The debootstrapped root
# with git and make is cached in $MG_FRESH_CACHE (default
# /var/cache/moongate-fresh-debian; MG_FRESH_REBUILD=1 remakes it), and so
# are the .deb files apt downloads in it, so only the first run downloads
# much; every run starts from a fresh copy of the cached root. Mounts are
# always undone, and the copy is deleted only once nothing is mounted in it.

fd_cache=${MG_FRESH_CACHE:-/var/cache/moongate-fresh-debian}
fd_mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fd_root=""
fd_gw_pid=""
fd_started=$(date +%s)

fd_say() { echo "  fresh-debian: $*"; }

# Runs a command in the chroot with a clean environment, as root in /root.
fd_in() {
    chroot "$fd_root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        sh -c "cd /root && $1"
}

fd_mounted() {
    # every mount point at or below $1 (from /proc/self/mounts, in order)
    awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts
}

fd_umount_all() {
    for _ in 1 2 3; do
        [ -z "$(fd_mounted "$1")" ] && return 0
        # deepest first
        fd_mounted "$1" | sort -r | while read -r fd_m; do umount "$fd_m" 2>/dev/null || umount -l "$fd_m" 2>/dev/null; done
    done
    [ -z "$(fd_mounted "$1")" ]
}

# Stops what runs inside the chroot (only processes whose root is ours:
# started by this test), then unmounts and deletes the copy.
fd_cleanup() {
    [ -n "$fd_root" ] || return 0
    if [ -n "$fd_gw_pid" ]; then
        fd_stop_gateway
    fi
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$fd_root" ] && kill -KILL "${p#/proc/}" 2>/dev/null
    done
    if fd_umount_all "$fd_root"; then
        rm -rf "$fd_root"
    else
        echo "  fresh-debian: mounts remain under $fd_root, not deleting it:"
        fd_mounted "$fd_root"
    fi
    fd_root=""
}

fd_mount() {
    mkdir -p "$fd_root/proc" "$fd_root/dev" "$fd_root/sys" "$fd_root/var/cache/apt/archives/partial" \
        "$fd_cache/archives/partial" &&
        mount -t proc proc "$fd_root/proc" &&
        mount --rbind /dev "$fd_root/dev" && mount --make-rslave "$fd_root/dev" &&
        mount -t sysfs -o ro sysfs "$fd_root/sys" &&
        mount --bind "$fd_cache/archives" "$fd_root/var/cache/apt/archives" &&
        cp /etc/resolv.conf "$fd_root/etc/resolv.conf"
}

# The cached root: debootstrap minbase, the sources a Debian 12 install
# has, and the README's prerequisites installed the README's way.
fd_build_cache() {
    fd_say "building the cached Debian 12 root with debootstrap from $fd_mirror (a few minutes, once)"
    mkdir -p "$fd_cache/archives/partial" || return 1
    fd_root=$(mktemp -d /var/tmp/moongate-fresh-build.XXXXXX) || return 1
    fd_log=$fd_cache/debootstrap.log
    if ! debootstrap --variant=minbase bookworm "$fd_root" "$fd_mirror" >"$fd_log" 2>&1; then
        tail -20 "$fd_log"
        return 1
    fi
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
        "$fd_mirror" "$fd_mirror" >"$fd_root/etc/apt/sources.list"
    fd_mount || return 1
    if ! fd_in "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q git make" >>"$fd_log" 2>&1; then
        tail -20 "$fd_log"
        return 1
    fi
    fd_umount_all "$fd_root" || return 1
    tar -C "$fd_root" -cf "$fd_cache/rootfs.tar.tmp" . && mv "$fd_cache/rootfs.tar.tmp" "$fd_cache/rootfs.tar"
}

# Waits up to $1 seconds for 127.0.0.1:8080 while the gateway's make runs.
fd_wait_gateway() {
    fd_i=0
    while [ $fd_i -lt $(($1 * 2)) ]; do
        if bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' 2>/dev/null; then return 0; fi
        kill -0 "$fd_gw_pid" 2>/dev/null || return 1
        sleep 0.5
        fd_i=$((fd_i + 1))
    done
    return 1
}

# Stops `make run` and the gateway under it: TERM to its process group,
# KILL after 10 s.
fd_stop_gateway() {
    [ -n "$fd_gw_pid" ] || return 0
    kill -TERM "-$fd_gw_pid" 2>/dev/null
    fd_i=0
    while kill -0 "$fd_gw_pid" 2>/dev/null && [ $fd_i -lt 100 ]; do
        sleep 0.1
        fd_i=$((fd_i + 1))
    done
    kill -KILL "-$fd_gw_pid" 2>/dev/null
    wait "$fd_gw_pid" 2>/dev/null
    fd_gw_pid=""
}

fd_only_prereqs() {
    fd_in "command -v git && command -v make && ! command -v cc && ! command -v python3" >/dev/null 2>&1
}

# A real HTTP request from inside the chroot (bash's /dev/tcp: the fresh
# system has no curl yet); sets fd_response and fd_status.
fd_request() {
    fd_response=$(fd_in "timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 &&
        printf \"GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n\" >&3 && cat <&3'" 2>&1 |
        tr -d '\r')
    fd_status=$(echo "$fd_response" | head -n 1)
}

fd_port_free() {
    ! bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

fd_run() {
    if [ "$(id -u)" != 0 ]; then
        fail "fresh Debian 12: needs root (chroot and mounts)"
        return
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    fi
    if [ ! -s "$fd_cache/rootfs.tar" ] || [ "${MG_FRESH_REBUILD:-}" = 1 ]; then
        if ! fd_build_cache; then
            fd_cleanup
            fail "fresh Debian 12: a debootstrapped root with git and make"
            return
        fi
        fd_cleanup
    fi
    fd_root=$(mktemp -d /var/tmp/moongate-fresh.XXXXXX)
    if ! tar -C "$fd_root" -xf "$fd_cache/rootfs.tar" || ! fd_mount; then
        fail "fresh Debian 12: a fresh copy of the cached root"
        return
    fi
    check "fresh Debian 12 has git and make, and no compiler" fd_only_prereqs
    # clone this commit (what `git clone` of the repository gives)
    if ! git bundle create "$fd_root/root/moongate.bundle" HEAD >/dev/null 2>&1 ||
        ! fd_in "git -c advice.detachedHead=false clone -q moongate.bundle moongate"; then
        fail "fresh Debian 12: git clone of this commit"
        return
    fi
    fd_log=$fd_root/root/make-run.log
    # make run's default config takes :8080 and :8081 in the host's network
    # (a chroot shares it); a spec elsewhere may hold one for a moment
    for fd_port in 8080 8081; do
        fd_i=0
        while ! fd_port_free $fd_port && [ $fd_i -lt 120 ]; do
            sleep 0.5
            fd_i=$((fd_i + 1))
        done
        if ! fd_port_free $fd_port; then
            fail "fresh Debian 12: make run needs 127.0.0.1:$fd_port, which something on this host holds"
            return
        fi
    done
    fd_t0=$(date +%s)
    # the README's first command, in the background; its own process group
    setsid chroot "$fd_root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        sh -c 'cd /root/moongate && exec make run' >"$fd_log" 2>&1 &
    fd_gw_pid=$!
    if fd_wait_gateway 900; then
        pass "fresh Debian 12: make run installs what it needs and the gateway listens on :8080 ($(($(date +%s) - fd_t0)) s)"
        fd_request
        check "fresh Debian 12: moongate answers a request from inside the chroot ($fd_status)" \
            sh -c 'echo "$1" | grep -q "^HTTP/1.1 [0-9][0-9][0-9] " && echo "$2" | grep -q "^Server: moongate"' \
            _ "$fd_status" "$fd_response"
    else
        tail -30 "$fd_log"
        fail "fresh Debian 12: make run installs what it needs and the gateway listens on :8080"
    fi
    fd_stop_gateway
    fd_t0=$(date +%s)
    fd_log=$fd_root/root/make-test.log
    fd_in "cd moongate && make test" >"$fd_log" 2>&1
    fd_line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$fd_log" | tail -n 1)
    if [ -n "$fd_line" ] && [ "$(echo "$fd_line" | sed -E 's/.* ([0-9]+) failed.*/\1/')" = 0 ]; then
        pass "fresh Debian 12: make test installs what it needs and passes (specs: $fd_line; $(($(date +%s) - fd_t0)) s)"
    else
        grep -E -A6 '^(Failure|Error) ' "$fd_log" | head -60
        tail -15 "$fd_log"
        fail "fresh Debian 12: make test installs what it needs and passes (specs: ${fd_line:-no result line})"
    fi
}

trap 'fd_cleanup' EXIT
trap 'fd_cleanup; exit 130' INT TERM
fd_run
fd_cleanup
trap - EXIT INT TERM
fd_say "took $(($(date +%s) - fd_started)) s"
