#!/usr/bin/env bash
# Memory checks of the native code. Usage: scripts/memcheck.sh [asan|valgrind|node-asan|all]
#
#   asan       the native core tests (ctest) built with AddressSanitizer, LeakSanitizer and
#              UndefinedBehaviorSanitizer (KILN_SANITIZE=1) into build-asan/; any error or
#              leak aborts the test that hit it.
#   valgrind   every native test binary (a RelWithDebInfo -O1 -g build in build-asan/valgrind)
#              under valgrind memcheck with the environment ctest gives it; a test fails on
#              any memcheck error or definitely lost block. valgrind is installed with apt-get
#              when missing and this runs as root.
#   node-asan  the addon built by node-gyp with ASan+UBSan in build-asan/node-addon (a copy
#              of the build inputs: the working tree's build/Release/kiln.node is not
#              touched), the TypeScript compiled next to it, and the worker, teardown,
#              lifecycle and session mocha tests run against it in a Node with libasan
#              preloaded. Leak detection is off there (Node itself is not leak-clean); every
#              use-after-free, overflow or UB in the addon aborts the process.
#   all        the three in that order (default).
#
# Exit status: 0 when every selected check is clean, 1 when one found an error or failed to
# run. Logs: build-asan/memcheck/. See docs/memcheck.md for results and what CI runs.
#
# Environment: KILN_ORT_LIBRARY (the ONNX Runtime library; default: the bundled one, as for
# `node scripts/ctest.js`), KILN_MEMCHECK_NODE_TESTS (node-asan: the compiled test files to
# run, relative to dist/, space-separated), JOBS (parallel compile jobs).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-all}
JOBS=${JOBS:-$(node -p 'require("os").availableParallelism?.() ?? require("os").cpus().length' 2>/dev/null || echo 2)}
LOGS=$ROOT/build-asan/memcheck
mkdir -p "$LOGS"

SUMMARY=()
FAILED=0
note() { printf '\n== %s\n' "$*"; }
record() { SUMMARY+=("$1"); }
fail() { FAILED=1; record "$1"; }
now() { date +%s; }

case "$MODE" in
  asan | valgrind | node-asan | all) ;;
  -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
  *) echo "usage: $0 [asan|valgrind|node-asan|all]" >&2; exit 2 ;;
esac

# The native tests read models written by the TypeScript fixtures (dist/), as ctest.js does.
build_ts() {
  if ! npx --no-install tsc -p tsconfig.json; then
    echo "memcheck: the TypeScript build failed" >&2
    return 1
  fi
}

ort_library() {
  if [ -n "${KILN_ORT_LIBRARY:-}" ]; then echo "$KILN_ORT_LIBRARY"; return; fi
  node -p 'require("./dist/lib/runtime.js").bundledLibrary() || ""'
}

# ---------------------------------------------------------------------------------------
# asan: ctest with ASan + LSan + UBSan.
#
# No LeakSanitizer suppressions are needed: libonnxruntime is not instrumented, but LSan
# intercepts its allocations too and reports none lost (what ORT keeps until exit is
# reachable from its globals, as is Kiln's intentionally immortal Runtime). Should a future
# ORT leak, put `leak:libonnxruntime.so` in a file with a comment why and pass it with
# LSAN_OPTIONS=suppressions=FILE; never a pattern that matches Kiln's own frames.
run_asan() {
  note "asan: native tests with AddressSanitizer + LeakSanitizer + UBSan (build-asan/)"
  local start log rc
  start=$(now)
  log=$LOGS/asan.log
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1:${ASAN_OPTIONS:-}" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}" \
  KILN_CMAKE_BUILD_DIR=build-asan KILN_SANITIZE=1 \
    node scripts/ctest.js 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local result
  result=$(grep -Eo '[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
  local findings
  findings=$(grep -Ec 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log")
  if [ "$rc" -eq 0 ] && [ "$findings" -eq 0 ]; then
    record "asan       PASS  ${result:-?}; 0 sanitizer reports ($(($(now) - start)) s)"
  else
    fail "asan       FAIL  ${result:-build or run failed}; $findings sanitizer reports; see $log"
  fi
}

# ---------------------------------------------------------------------------------------
# valgrind: each ctest test under memcheck.

ensure_valgrind() {
  command -v valgrind >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    note "valgrind: installing with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null &&
      command -v valgrind >/dev/null 2>&1 && return 0
  fi
  echo "memcheck: valgrind is not installed; install it (Debian/Ubuntu: sudo apt-get install valgrind; Fedora: sudo dnf install valgrind) and rerun" >&2
  return 1
}

# Suppressions for errors that are neither Kiln's nor ONNX Runtime's. Each entry says why.
write_valgrind_suppressions() {
  cat >"$1" <<'EOF'
# Generated by scripts/memcheck.sh. Every entry is a known false positive or a defect outside
# Kiln; each is narrowed to frames in the library it belongs to.
#
# glibc's dynamic loader (ld.so) expands "$ORIGIN" in a library's RUNPATH (libonnxruntime.so
# has RUNPATH $ORIGIN) with its own SSE2 strncmp, which compares 8 bytes at a time and so
# reads past the end of the 8-byte strdup()ed "$ORIGIN" string; the aligned over-read cannot
# cross a page and the bytes never affect the result. valgrind does not redirect ld.so's
# internal strncmp (Debian 12, glibc 2.36, valgrind 3.19), so it reports Invalid read of size
# 8 in is_dst() for every dlopen of ORT (4 per process here). Matched only under is_dst in
# ld.so; the Addr16 twin covers ld.so builds whose strncmp reads 16 bytes at a time.
{
   glibc-ld.so-strncmp-is_dst-rpath-origin
   Memcheck:Addr8
   fun:strncmp
   fun:is_dst
   ...
}
{
   glibc-ld.so-strncmp-is_dst-rpath-origin-addr16
   Memcheck:Addr16
   fun:strncmp
   fun:is_dst
   ...
}
#
# ONNX Runtime itself (the prebuilt libonnxruntime.so.1 of onnxruntime-node, stripped):
# while CreateEnvWithGlobalThreadPools sets up its thread pools (kiln::Runtime::Runtime,
# native/core/runtime.cc:68), ORT calls memcpy with the same 4-byte stack address as
# source and destination (a self-assignment compiled to memcpy). Copying a region onto
# itself changes nothing, but memcpy's contract forbids overlap and valgrind reports it.
# The entry requires the caller of memcpy to be inside libonnxruntime: an overlapping copy
# in Kiln's own code is still reported. 4 per process that creates the ORT environment.
{
   onnxruntime-memcpy-onto-itself-in-CreateEnvWithGlobalThreadPools
   Memcheck:Overlap
   fun:__memcpy_chk
   obj:*/libonnxruntime.so*
   ...
}
EOF
}

# One ctest test under memcheck, as ctest would run it; its exit status and seconds go to
# $LOGS/valgrind-NAME.log.rc. Arguments: name, env (\x1f-separated), argv (\x1f-separated),
# ORT library, models folder, suppressions file.
valgrind_one() {
  local name=$1 envs=$2 cmd=$3 lib=$4 models=$5 supp=$6
  local -a env_list=() argv=()
  [ -n "$envs" ] && IFS=$'\x1f' read -r -a env_list <<<"$envs"
  IFS=$'\x1f' read -r -a argv <<<"$cmd"
  local log=$LOGS/valgrind-$name.log t0 rc
  t0=$(now)
  env KILN_ORT_LIBRARY="$lib" KILN_TEST_MODELS="$models" "${env_list[@]}" \
    valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite,possible \
      --error-exitcode=1 --track-origins=yes --num-callers=40 --suppressions="$supp" --log-file="$log" \
      "${argv[@]}" </dev/null >"$log.out" 2>&1
  rc=$?
  echo "$rc $(($(now) - t0))" >"$log.rc"
}

run_valgrind() {
  note "valgrind: native tests under memcheck (build-asan/valgrind, RelWithDebInfo -O1 -g)"
  local start
  start=$(now)
  if ! ensure_valgrind; then
    fail "valgrind   FAIL  valgrind is not installed (apt-get install valgrind)"
    return
  fi
  local dir=build-asan/valgrind
  # A normal optimised build with debug info; ctest.js builds it, writes the models and runs
  # the tests once natively (memcheck results mean little for a test that fails anyway).
  if ! cmake -S . -B "$dir" -DKILN_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -fno-omit-frame-pointer" >"$LOGS/valgrind-configure.log" 2>&1 ||
     ! KILN_CMAKE_BUILD_DIR=$dir node scripts/ctest.js >"$LOGS/valgrind-build.log" 2>&1; then
    cat "$LOGS/valgrind-configure.log" "$LOGS/valgrind-build.log" 2>/dev/null | tail -40
    fail "valgrind   FAIL  the native build or its plain test run failed; see $LOGS/valgrind-build.log"
    return
  fi
  local lib models supp
  lib=$(ort_library)
  models=$ROOT/$dir/models
  supp=$ROOT/$dir/kiln-valgrind.supp
  write_valgrind_suppressions "$supp"
  # Each test's command and extra environment, as ctest would run it (CMakeLists.txt's
  # set_tests_properties): name \x1e env (\x1f-separated) \x1e argv (\x1f-separated); not tabs,
  # which read(1) would merge when a test has no environment of its own.
  local tests
  tests=$(ctest --test-dir "$dir" --show-only=json-v1 | node -e '
    const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
    for (const t of j.tests) {
      const env = (t.properties || []).find((p) => p.name === "ENVIRONMENT");
      console.log([t.name, (env ? env.value : []).join("\x1f"), t.command.join("\x1f")].join("\x1e"));
    }') || { fail "valgrind   FAIL  could not list the ctest tests"; return; }
  local bad=0 count=0 name envs cmd
  printf '%-24s %6s %8s %14s %14s %10s %6s\n' test rc errors "definite (B)" "possible (B)" suppressed time | tee "$LOGS/valgrind-summary.txt"
  # Two tests at a time (JOBS at most): each is single-threaded under valgrind for most of its run.
  local width=$((JOBS < 2 ? 1 : 2)) running=0
  local -a names=()
  while IFS=$'\x1e' read -r name envs cmd; do
    [ -n "$name" ] || continue
    count=$((count + 1))
    names+=("$name")
    if [ "$running" -ge "$width" ]; then
      wait -n
      running=$((running - 1))
    fi
    valgrind_one "$name" "$envs" "$cmd" "$lib" "$models" "$supp" &
    running=$((running + 1))
  done <<<"$tests"
  wait
  for name in "${names[@]}"; do
    local rc errors definite possible suppressed seconds log=$LOGS/valgrind-$name.log
    read -r rc seconds <"$log.rc"
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tail -1 | tr -d ,)
    definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1 | tr -d ,)
    possible=$(sed -n 's/.*possibly lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1 | tr -d ,)
    suppressed=$(sed -n 's/.*ERROR SUMMARY: .*(suppressed: \([0-9,]*\) from.*/\1/p' "$log" | tail -1 | tr -d ,)
    printf '%-24s %6s %8s %14s %14s %10s %5ss\n' "$name" "$rc" "${errors:-?}" "${definite:-0}" "${possible:-0}" "${suppressed:-0}" "$seconds" |
      tee -a "$LOGS/valgrind-summary.txt"
    if [ "$rc" -ne 0 ] || [ "${errors:-1}" != 0 ] || [ "${definite:-0}" != 0 ]; then
      bad=$((bad + 1))
      echo "---- $name: $log" >&2
      grep -E '^==[0-9]+== ' "$log" | head -60 >&2
      tail -20 "$log.out" >&2
    fi
  done
  if [ "$count" -eq 0 ]; then
    fail "valgrind   FAIL  no tests found"
  elif [ "$bad" -eq 0 ]; then
    record "valgrind   PASS  $count/$count tests: 0 errors, 0 bytes definitely lost ($(($(now) - start)) s)"
  else
    fail "valgrind   FAIL  $bad of $count tests with errors or definite leaks; see $LOGS/valgrind-*.log"
  fi
}

# ---------------------------------------------------------------------------------------
# node-asan: the addon with ASan + UBSan under the worker/teardown tests.
#
# How the tests pick the ASan addon without touching lib/: lib/binding.ts loads the addon
# with node-gyp-build from the package root, two levels above the compiled lib/binding.js.
# The TypeScript is compiled into build-asan/node-addon/dist, so the package root is
# build-asan/node-addon, whose build/Release/kiln.node is the ASan build. (node-gyp-build
# also honours KILN_PREBUILD=<dir>, "<NAME>_PREBUILD" for package "kiln"; it is set as well.)
run_node_asan() {
  note "node-asan: addon with ASan + UBSan (build-asan/node-addon), worker and teardown tests"
  local start
  start=$(now)
  local dir=$ROOT/build-asan/node-addon
  mkdir -p "$dir/scripts"
  cp -p binding.gyp package.json "$dir/"
  cp -p scripts/sources.js scripts/ort-headers.js "$dir/scripts/"
  local l
  for l in native node_modules third_party; do
    [ -e "$ROOT/$l" ] || continue
    [ -L "$dir/$l" ] || ln -sfn "$ROOT/$l" "$dir/$l"
  done
  # Node's own headers where this Node was installed with them (no download), else node-gyp's cache.
  local nodedir=() prefix
  prefix=$(dirname "$(dirname "$(command -v node)")")
  [ -f "$prefix/include/node/node_api.h" ] && nodedir=(--nodedir="$prefix")
  local gyp=(node "$ROOT/node_modules/node-gyp/bin/node-gyp.js")
  local flags="-fsanitize=address,undefined -fno-omit-frame-pointer -g"
  if ! (cd "$dir" &&
        { [ -f build/Makefile ] || "${gyp[@]}" configure "${nodedir[@]}"; } &&
        CXXFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" "${gyp[@]}" build -j "$JOBS") >"$LOGS/node-asan-build.log" 2>&1; then
    tail -30 "$LOGS/node-asan-build.log"
    fail "node-asan  FAIL  the ASan addon did not build; see $LOGS/node-asan-build.log"
    return
  fi
  if ! npx --no-install tsc -p tsconfig.json --outDir "$dir/dist"; then
    fail "node-asan  FAIL  the TypeScript build failed"
    return
  fi
  local libasan
  libasan=$(g++ -print-file-name=libasan.so)
  local asan_env=(
    LD_PRELOAD="$libasan"
    KILN_PREBUILD="$dir"
    # handle_segv + allow_user_segv_handler=0: Node installs its own SIGSEGV handler (for
    # WebAssembly traps) over ASan's, and a crash in the addon then dies silently with 139;
    # keeping ASan's handler prints the faulting stack. (No test here runs out-of-bounds wasm.)
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:check_initialization_order=1:handle_segv=1:allow_user_segv_handler=0:${ASAN_OPTIONS:-}"
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
  )
  # Check that the addon the tests will load is the instrumented one.
  local loaded
  loaded=$(cd "$dir" && env "${asan_env[@]}" node -e 'process.stdout.write(require("node-gyp-build").resolve(process.cwd()))')
  if [ "$loaded" != "$dir/build/Release/kiln.node" ] || ! ldd "$loaded" | grep -q libasan; then
    fail "node-asan  FAIL  the tests would not load the ASan addon (resolved: $loaded)"
    return
  fi
  local tests=${KILN_MEMCHECK_NODE_TESTS:-test/workers.test.js test/teardown-stress.test.js test/lifecycle.test.js test/session.test.js}
  local files=() t
  for t in $tests; do files+=("$dir/dist/$t"); done
  local log=$LOGS/node-asan.log rc
  (cd "$dir" && env "${asan_env[@]}" node "$ROOT/node_modules/mocha/bin/mocha.js" --no-config --timeout 180000 "${files[@]}") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local findings summary
  findings=$(grep -Ec 'ERROR: AddressSanitizer|runtime error:' "$log")
  summary=$(grep -Eo '[0-9]+ (passing|failing|pending)' "$log" | tr '\n' ' ')
  if [ "$rc" -eq 0 ] && [ "$findings" -eq 0 ]; then
    record "node-asan  PASS  ${summary}; 0 sanitizer reports ($(($(now) - start)) s)"
  else
    fail "node-asan  FAIL  ${summary:-mocha exit $rc}; $findings sanitizer reports; see $log"
  fi
}

# ---------------------------------------------------------------------------------------
START=$(now)
if ! build_ts; then
  echo "memcheck: cannot continue without dist/" >&2
  exit 1
fi
case "$MODE" in
  asan) run_asan ;;
  valgrind) run_valgrind ;;
  node-asan) run_node_asan ;;
  all) run_asan; run_valgrind; run_node_asan ;;
esac

note "memcheck summary ($MODE, $(($(now) - START)) s; logs in $LOGS)"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
exit "$FAILED"
