#!/usr/bin/env bash
# Run the verbs transport's tests on real (software) RDMA devices: a QEMU guest (TCG, no KVM)
# booting Debian's kernel with Soft-RoCE (`rdma_rxe`) on a veth pair.
#
#   scripts/rxe-guest.sh            build the guest if not cached, build the tests, run them
#   scripts/rxe-guest.sh install    only apt-get what is missing
#   scripts/rxe-guest.sh build      only build (and cache) the guest image
#
# What the guest is: the newest `linux-image-<ver>-amd64` Debian offers (kernel and modules taken
# out of the .deb with dpkg-deb), and a busybox (busybox-static) initramfs holding the modules
# rdma_rxe, ib_uverbs, veth and their dependencies (from modules.dep), iproute2's `ip` and `rdma`,
# libibverbs with the rxe provider, and the glibc libraries all of these need, copied from the
# host. The test binaries (`cargo test --no-run -p faascache-transport --features verbs`, and
# the cluster test `server/faascache/tests/cluster_transport.rs` with the `faascache` binary it starts,
# both built with verbs) go in a second cpio archive appended to the cached one, so a rerun only
# rebuilds that. The cluster test runs a coordinator and three servers, every RPC over infrc,
# and kills one to check recovery.
#
# Inside the guest (no network: `-nic none`): veth0 (10.77.0.1) <-> veth1 (10.77.0.2), an rxe
# device on each end (rxe0, rxe1), policy routing so that traffic between the two local addresses
# really crosses the veth pair (otherwise the kernel would loop it through `lo`, where no rxe
# device listens). The server side of every test uses rxe1, the client side rxe0. Each test
# binary's exit code is printed on the serial console as `RXE-RESULT <name> rc=<n>`; this script
# exits non-zero if any is non-zero, if one is missing, or if the guest does not finish within
# RXE_TIMEOUT seconds.
#
# Settings (environment):
#   RXE_GUEST_DIR=target/rxe-guest   cache directory
#   RXE_TIMEOUT=900                  seconds before the guest is killed (TCG emulation is slow)
#   RXE_MEM=2G RXE_SMP=2             guest memory and CPUs
#   RXE_TEST_ARGS=                   extra arguments for every test binary (e.g. a test filter)
#
# Emulated latency means nothing: this is a functional test. Real numbers need real hardware
# (docs/transports.md, "Verbs").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GUEST_DIR=${RXE_GUEST_DIR:-$ROOT/target/rxe-guest}
TIMEOUT=${RXE_TIMEOUT:-900}
MEM=${RXE_MEM:-2G}
SMP=${RXE_SMP:-2}
# Bump when the base image's contents change (forces a rebuild of the cached image).
BASE_VERSION=6

log() { echo "rxe-guest: $*" >&2; }
die() { echo "rxe-guest: error: $*" >&2; exit 1; }

# --- install -------------------------------------------------------------------------------------
# qemu and busybox for the guest; rdma-core's libraries and iproute2 to copy into it; cmake and
# clang/libclang to build the verbs feature (rdma-mummy-sys runs cmake and bindgen).
PKGS=(qemu-system-x86 busybox-static cpio rdma-core libibverbs1 ibverbs-providers iproute2
      cmake clang libclang-dev binutils kmod jq python3)

install() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# --- the cached base image ---------------------------------------------------------------------
pick_kernel() {
  local k
  k=$(apt-cache pkgnames linux-image- 2>/dev/null \
      | grep -E '^linux-image-[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-amd64$' | sort -V | tail -1 || true)
  if [[ -z $k ]]; then
    apt-get update -qq
    k=$(apt-cache pkgnames linux-image- \
        | grep -E '^linux-image-[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-amd64$' | sort -V | tail -1 || true)
  fi
  [[ -n $k ]] || die "no linux-image-<version>-amd64 package found by apt-cache"
  echo "$k"
}

# Copy a host binary or library and every library it needs (ldd closure) into $1.
copy_with_libs() {
  local dest=$1; shift
  local f lib
  for f in "$@"; do
    mkdir -p "$dest$(dirname "$f")"
    cp -L "$f" "$dest$f"
    for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+' || true); do
      [[ -e $dest$lib ]] && continue
      mkdir -p "$dest$(dirname "$lib")"
      cp -L "$lib" "$dest$lib"
    done
  done
}

# Module names -> ordered list of .ko paths (dependencies first), from modules.dep.
resolve_modules() {
  local moddir=$1; shift
  python3 - "$moddir" "$@" <<'PY'
import os, sys
moddir, wanted = sys.argv[1], sys.argv[2:]
deps, path_of = {}, {}
def name(p):
    b = os.path.basename(p)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if b.endswith(ext):
            b = b[: -len(ext)]
            break
    return b.replace("-", "_")
for line in open(os.path.join(moddir, "modules.dep")):
    mod, _, rest = line.partition(":")
    n = name(mod)
    path_of[n] = mod
    deps[n] = [name(d) for d in rest.split()]
order, seen = [], set()
def visit(n):
    if n in seen:
        return
    seen.add(n)
    if n not in path_of:
        sys.exit(f"module {n} not found in modules.dep (built into the kernel?)")
    for d in deps[n]:
        visit(d)
    order.append(path_of[n])
for w in wanted:
    visit(w.replace("-", "_"))
print("\n".join(order))
PY
}

build_base() {
  local pkg kver work tree
  pkg=$(pick_kernel)
  kver=${pkg#linux-image-}
  BASE_CPIO=$GUEST_DIR/base-$kver-v$BASE_VERSION.cpio.gz
  KERNEL=$GUEST_DIR/vmlinuz-$kver
  if [[ -s $BASE_CPIO && -s $KERNEL ]]; then
    return
  fi
  log "building the guest image for kernel $kver (cached under $GUEST_DIR)"
  work=$GUEST_DIR/work
  rm -rf "$work"; mkdir -p "$work/deb" "$work/kpkg"
  (cd "$work/deb" && apt-get download -q "$pkg" >/dev/null 2>&1) \
    || die "apt-get download $pkg failed"
  dpkg-deb -x "$work"/deb/*.deb "$work/kpkg"
  local moddir=$work/kpkg/lib/modules/$kver
  [[ -d $moddir ]] || die "$pkg has no /lib/modules/$kver"
  # The package ships no modules.dep (its postinst runs depmod): make one.
  [[ -s $moddir/modules.dep ]] || depmod -b "$work/kpkg" "$kver" || die "depmod failed"
  cp "$work/kpkg/boot/vmlinuz-$kver" "$work/vmlinuz"

  tree=$work/root
  mkdir -p "$tree"/{bin,sbin,dev,proc,sys,tmp,etc,lib/modules,tests}
  cp /bin/busybox "$tree/bin/busybox"
  # rdma_rxe needs crc32_generic (its crc32 is looked up at run time, not a modules.dep link);
  # ib_uverbs gives /dev/infiniband/uverbsN; configfs is what rdma_cm would need (not loaded).
  local mods
  mods=$(resolve_modules "$moddir" crc32_generic veth ib_core ib_uverbs rdma_rxe) \
    || die "module resolution failed"
  : >"$tree/etc/modules.order"
  local m base
  for m in $mods; do
    base=$(basename "$m")
    case $base in
      *.ko.xz) xz -dc "$moddir/$m" >"$tree/lib/modules/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$moddir/$m" >"$tree/lib/modules/${base%.zst}"; base=${base%.zst} ;;
      *) cp "$moddir/$m" "$tree/lib/modules/$base" ;;
    esac
    echo "$base" >>"$tree/etc/modules.order"
  done
  log "modules: $(tr '\n' ' ' <"$tree/etc/modules.order")"

  local libdir=/usr/lib/x86_64-linux-gnu
  local provider
  provider=$(ls "$libdir"/libibverbs/librxe-rdmav*.so 2>/dev/null | head -1)
  [[ -n $provider ]] || die "no rxe provider in $libdir/libibverbs (install ibverbs-providers)"
  copy_with_libs "$tree" "$(command -v ip)" "$(command -v rdma)" \
    "$libdir/libibverbs.so.1" "$provider"
  install -D "$(command -v ip)" "$tree/usr/sbin/ip"
  install -D "$(command -v rdma)" "$tree/usr/bin/rdma"
  mkdir -p "$tree/etc/libibverbs.d"
  cp /etc/libibverbs.d/rxe.driver "$tree/etc/libibverbs.d/"
  # ld.so looks in /lib64 for the loader and in the multiarch dirs for libraries.
  mkdir -p "$tree/lib64" "$tree/lib/x86_64-linux-gnu"
  [[ -e $tree/lib64/ld-linux-x86-64.so.2 ]] || cp -L /lib64/ld-linux-x86-64.so.2 "$tree/lib64/"

  cat >"$tree/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# busybox sh prefers its own applets to PATH: name iproute2's tools by path.
IP=/usr/sbin/ip
RDMA=/usr/bin/rdma
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "RXE-SETUP booted $(uname -r)"
for m in $(cat /etc/modules.order); do
  insmod /lib/modules/$m || echo "RXE-SETUP insmod $m failed"
done
$IP link set lo up
$IP link add veth0 type veth peer name veth1
$IP addr add 10.77.0.1/24 dev veth0
$IP addr add 10.77.0.2/24 dev veth1
$IP link set veth0 up
$IP link set veth1 up
# Both addresses are local: make locally generated traffic to the other end leave through the
# veth pair (and be accepted on arrival although its source address is local).
for i in all veth0 veth1; do
  echo 1 >/proc/sys/net/ipv4/conf/$i/accept_local
  echo 0 >/proc/sys/net/ipv4/conf/$i/rp_filter
done
$IP rule add pref 100 lookup local
$IP rule del pref 0
$IP route add 10.77.0.2 dev veth0 src 10.77.0.1 table 201
$IP route add 10.77.0.1 dev veth1 src 10.77.0.2 table 202
$IP rule add pref 10 iif lo to 10.77.0.2 lookup 201
$IP rule add pref 11 iif lo to 10.77.0.1 lookup 202
$IP neigh replace 10.77.0.2 lladdr $(cat /sys/class/net/veth1/address) dev veth0 nud permanent
$IP neigh replace 10.77.0.1 lladdr $(cat /sys/class/net/veth0/address) dev veth1 nud permanent
$RDMA link add rxe0 type rxe netdev veth0 || echo "RXE-SETUP $RDMA link add rxe0 failed"
$RDMA link add rxe1 type rxe netdev veth1 || echo "RXE-SETUP $RDMA link add rxe1 failed"
# The IPv4 GIDs are added asynchronously: wait for them.
for i in $(seq 50); do
  grep -q ffff:0a4d /sys/class/infiniband/rxe1/ports/1/gids/* 2>/dev/null && break
  sleep 0.1
done
$RDMA link show
ulimit -l unlimited
if [ -x /tests/run.sh ]; then /tests/run.sh; else echo "RXE-SETUP no /tests/run.sh"; fi
# Evidence that the traffic crossed the veth pair between the two devices.
for d in rxe0 rxe1; do
  echo "RXE-STATS $d sent_pkts=$(cat /sys/class/infiniband/$d/ports/1/hw_counters/sent_pkts 2>/dev/null) rcvd_pkts=$(cat /sys/class/infiniband/$d/ports/1/hw_counters/rcvd_pkts 2>/dev/null) rnr_nak_rcvd=$(cat /sys/class/infiniband/$d/ports/1/hw_counters/rcvd_rnr_err 2>/dev/null)"
done
echo "RXE-DONE"
sync
poweroff -f
INIT
  chmod +x "$tree/init"
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$BASE_CPIO.tmp"
  mv "$BASE_CPIO.tmp" "$BASE_CPIO"
  mv "$work/vmlinuz" "$KERNEL"
  rm -rf "$work"
}

# --- the test binaries -------------------------------------------------------------------------
build_tests() {
  log "building the verbs test binaries"
  local json exes
  json=$(cargo test --no-run -p faascache-transport --features verbs --message-format=json 2>/dev/null) \
    || { cargo test --no-run -p faascache-transport --features verbs; die "cargo test --no-run failed"; }
  exes=$(echo "$json" | jq -r 'select(.reason=="compiler-artifact" and .executable!=null
        and .profile.test==true
        and (.target.name=="faascache_transport" or .target.name=="conformance" or .target.name=="verbs")) | .executable')
  [[ -n $exes ]] || die "no test executables found"
  local tree=$GUEST_DIR/tests-root
  rm -rf "$tree"; mkdir -p "$tree/tests"
  local runner=$tree/tests/run.sh
  cat >"$runner" <<'RUN'
#!/bin/sh
export FAASCACHE_VERBS_TEST_SERVER="infrc:host=10.77.0.2,port=0,dev=rxe1"
export FAASCACHE_VERBS_DEV=rxe0
export RUST_BACKTRACE=1
cd /tmp
RUN
  local e name
  for e in $exes; do
    name=$(basename "$e"); name=${name%-*}
    objcopy --strip-debug "$e" "$tree/tests/$name"
    copy_with_libs "$tree" "$e"
    rm -rf "${tree:?}${e%/*}"
    # Unit tests: only the verbs module's; conformance: only the verbs suite; tests/verbs.rs: all.
    local filter=verbs
    [[ $name == verbs ]] && filter=
    echo "echo \"RXE-RUN $name\"; /tests/$name $filter --test-threads=2 ${RXE_TEST_ARGS:-}; echo \"RXE-RESULT $name rc=\$?\"" >>"$runner"
    echo "$name" >>"$tree/tests/expected"
  done
  # The cluster test: a coordinator and three `faascache server`s (built with verbs) talking
  # infrc to each other and to the test's client; the binary goes where the test expects it.
  log "building the verbs cluster test and the faascache binary"
  json=$(cargo test --no-run -p faascache --features verbs --test cluster_transport \
         --message-format=json 2>/dev/null) \
    || { cargo test --no-run -p faascache --features verbs --test cluster_transport;
         die "cargo test --no-run (cluster) failed"; }
  local cluster bin
  cluster=$(echo "$json" | jq -r 'select(.reason=="compiler-artifact" and .executable!=null
        and .profile.test==true and .target.name=="cluster_transport") | .executable')
  bin=$(echo "$json" | jq -r 'select(.reason=="compiler-artifact" and .executable!=null
        and .target.name=="faascache" and (.target.kind|index("bin"))) | .executable')
  [[ -n $cluster && -n $bin ]] || die "cluster test or faascache binary not found"
  objcopy --strip-debug "$cluster" "$tree/tests/cluster_transport"
  copy_with_libs "$tree" "$cluster"
  rm -rf "${tree:?}${cluster%/*}"
  copy_with_libs "$tree" "$bin"
  objcopy --strip-debug "$bin" "$tree$bin"
  echo "echo \"RXE-RUN cluster_transport\"; FAASCACHE_TEST_TRANSPORT=infrc /tests/cluster_transport --test-threads=1 --nocapture ${RXE_TEST_ARGS:-}; echo \"RXE-RESULT cluster_transport rc=\$?\"" >>"$runner"
  echo cluster_transport >>"$tree/tests/expected"
  chmod +x "$runner"
  TESTS_CPIO=$GUEST_DIR/tests.cpio.gz
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$TESTS_CPIO"
  EXPECTED=$(cat "$tree/tests/expected")
}

run_guest() {
  local initrd=$GUEST_DIR/initrd.cpio.gz console=$GUEST_DIR/console.log
  cat "$BASE_CPIO" "$TESTS_CPIO" >"$initrd"
  log "booting the guest (TCG, $SMP CPUs, $MEM; console in $console; timeout ${TIMEOUT}s)"
  local rc=0
  timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp "$SMP" -m "$MEM" \
    -nic none -nographic -no-reboot -serial mon:stdio \
    -kernel "$KERNEL" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" </dev/null >"$console" 2>&1 || rc=$?
  grep -aE "RXE-(SETUP|RUN|RESULT|DONE|STATS)|test result:|^test .* (FAILED|ok)$|SKIP|panicked" "$console" >&2 || true
  if ((rc == 124 || rc == 137)); then
    die "the guest did not finish within ${TIMEOUT}s (see $console)"
  fi
  grep -q "RXE-DONE" "$console" || die "the guest stopped before the tests finished (see $console)"
  local fail=0 n r
  for n in $EXPECTED; do
    r=$(grep -aoE "RXE-RESULT $n rc=[0-9]+" "$console" | tail -1 | sed 's/.*rc=//')
    if [[ -z $r ]]; then log "$n: no result"; fail=1
    elif [[ $r != 0 ]]; then log "$n: FAILED (exit $r)"; fail=1
    else log "$n: passed"; fi
  done
  ((fail == 0)) || die "verbs tests failed in the guest (console: $console)"
  log "all verbs tests passed on Soft-RoCE"
}

mkdir -p "$GUEST_DIR"
case "${1:-all}" in
  install) install ;;
  build) install; build_base ;;
  all) install; build_base; build_tests; run_guest ;;
  *) die "usage: $0 [all|install|build]" ;;
esac
