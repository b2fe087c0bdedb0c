#!/usr/bin/env bash
# Prints the path of a llama-server binary for the real-engine tests: the one on PATH if there is
# one, else a CPU build from the llama.cpp sources vendored in llama-cpp-python's sdist, made once
# into a cache outside the checkout and reused by later runs. Progress goes to stderr, the path
# alone to stdout; a non-zero exit means no binary could be had.
#   GRIDPLACE_LLAMA_CPP_PYTHON_VERSION  the sdist whose llama.cpp is built (pinned: the cache key)
#   GRIDPLACE_LLAMA_SERVER_CACHE        the cache root (default: $XDG_CACHE_HOME or ~/.cache)
#   PYTHON                              the interpreter whose pip downloads the sdist
set -euo pipefail

if found="$(command -v llama-server)"; then
    echo "llama-server: using $found from PATH" >&2
    echo "$found"
    exit 0
fi

version="${GRIDPLACE_LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache_root="${GRIDPLACE_LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gridplace/llama-server}"
dest="$cache_root/$version"
binary="$dest/bin/llama-server"
if [ -x "$binary" ]; then
    echo "llama-server: using the cached build $binary" >&2
    echo "$binary"
    exit 0
fi

mkdir -p "$cache_root"
work="$(mktemp -d "$cache_root/.build-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$SECONDS
echo "llama-server: building llama.cpp from llama-cpp-python $version's sdist in $work" >&2
"${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    --dest "$work" "llama-cpp-python==$version" >&2
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
# CPU only, static so the cached binary needs nothing from the build tree; no libcurl (the tests
# load local files), no tests or examples beyond the server.
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON >"$work/configure.log" 2>&1 \
    || { tail -n 40 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-server -j"${GRIDPLACE_BUILD_JOBS:-2}" \
    >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
# Into place in one rename, so a concurrent run sees either no build or a whole one.
mkdir -p "$work/out/bin"
cp "$work/build/bin/llama-server" "$work/out/bin/"
"$work/out/bin/llama-server" --version >"$work/out/version.txt" 2>&1 || true
mv -T "$work/out" "$dest" 2>/dev/null || echo "llama-server: another run finished first" >&2
echo "llama-server: built in $((SECONDS - start)) s: $binary" >&2
echo "$binary"
