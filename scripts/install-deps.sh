#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only those
# missing (so a second run is instant), and starts the services the tests
# use when they are not running. Idempotent.
#
#   scripts/install-deps.sh            packages for building and running
#   scripts/install-deps.sh --build    only what compiling needs (a C compiler,
#                                      pkg-config, libopus-dev and opencore-amr's
#                                      -dev packages, patchelf for the engine's
#                                      library): run before a build
#   scripts/install-deps.sh --services also what only the tests need (chromium
#                                      and node for the dashboard test), and
#                                      start PostgreSQL if it is down
set -euo pipefail

need=()
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v patchelf >/dev/null 2>&1 || need+=(patchelf)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# Opus is decoded by libopus (crates/audio/src/opus.rs).
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
# AMR-NB and AMR-WB are decoded by opencore-amr (crates/audio/src/amr.rs).
pkg-config --exists opencore-amrnb 2>/dev/null || need+=(libopencore-amrnb-dev)
pkg-config --exists opencore-amrwb 2>/dev/null || need+=(libopencore-amrwb-dev)
if [ "${1:-}" != "--build" ]; then
  command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
  command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
  # The AMR-WB encoder the fixtures are made with (ffmpeg's Debian build
  # encodes no AMR); opencore-amrnb encodes AMR-NB itself.
  pkg-config --exists vo-amrwbenc 2>/dev/null || need+=(libvo-amrwbenc-dev)
fi
command -v flock >/dev/null 2>&1 || need+=(util-linux)
if [ "${1:-}" = "--services" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if ((${#need[@]})); then
  echo "install-deps: installing ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Whether something accepts TCP connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "${1:-}" = "--services" ]; then
  if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "install-deps: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if command -v redis-server >/dev/null 2>&1 && ! listening 6379; then
    echo "install-deps: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do listening 6379 && break; sleep 1; done
  fi
  if command -v rabbitmqctl >/dev/null 2>&1; then
    if ! listening 5672; then
      echo "install-deps: starting RabbitMQ"
      # A node that is up with its application stopped only needs start_app.
      rabbitmqctl -q start_app >/dev/null 2>&1 || rabbitmq-server -detached
      for _ in $(seq 1 60); do listening 5672 && break; sleep 1; done
    fi
  fi
fi
