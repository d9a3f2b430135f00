#!/usr/bin/env bash
# Install the Debian packages that build, test and run celeriac.
#
# Usage: scripts/deps.sh            install build, test and service packages
#        scripts/deps.sh --build    install only what `make all` needs
#        scripts/deps.sh --runtime  install only the shared libraries the
#                                   built binaries load
#        scripts/deps.sh --print [--build|--runtime]
#                                   print the package list and install nothing
#
# Packages that dpkg already lists as installed are skipped, so a second run
# makes no changes and does not call apt-get at all.
set -euo pipefail

# Compiler and the headers of every library that `make all` links.
BUILD_PACKAGES=(
    build-essential
    pkg-config
    librabbitmq-dev
    libjansson-dev
    libhiredis-dev
    libssl-dev
    uuid-dev
    zlib1g-dev
)

# The rest of the `make test` toolchain: unit test framework, formatter,
# the local brokers and the Python Celery client used by the interop tests.
TEST_PACKAGES=(
    check
    libsubunit-dev
    clang-format
    clang
    libclang-rt-14-dev
    rabbitmq-server
    redis-server
    openssl
    python3-celery
    python3-pytest
    python3-redis
    python3-amqp
    python3-kombu
    procps
    gnuplot-nox # plots docs/bench-scaling.png in `make bench`
)

# Debian 12 (bookworm) names of the libraries that build/celeriac,
# build/libceleriac.so and build/demo_tasks.so link against.
RUNTIME_PACKAGES=(
    librabbitmq4
    libjansson4
    libhiredis0.14
    libssl3
    libuuid1
    zlib1g
)

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0"
}

selection=all
print_only=0
for arg in "$@"; do
    case "$arg" in
        --build) selection=build ;;
        --runtime) selection=runtime ;;
        --print) print_only=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "deps.sh: unknown option '$arg'" >&2
            usage >&2
            exit 2
            ;;
    esac
done

case "$selection" in
    build) packages=("${BUILD_PACKAGES[@]}") ;;
    runtime) packages=("${RUNTIME_PACKAGES[@]}") ;;
    *) packages=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
esac

if ((print_only)); then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

missing=()
for package in "${packages[@]}"; do
    # `dpkg -s` also succeeds for removed packages whose config files remain,
    # so check the status line instead of the exit code.
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "deps.sh: all ${#packages[@]} packages are installed"
    exit 0
fi

if ((EUID == 0)); then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: run this script as root or install sudo" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
