#!/usr/bin/env bash
# Google's Pub/Sub emulator (the one the Google Cloud SDK installs) on a free loopback port.
#
#   scripts/pubsub-emulator.sh start --dir DIR [--port PORT] [--owner-pid PID] [--rm-dir]
#       Start the emulator's jar with java directly (the gcloud wrapper would leave its
#       java child running when stopped), on 127.0.0.1 and a free port (or PORT, e.g. to
#       restart on the same address), wait until it answers, write DIR/env
#       (PUBSUB_EMULATOR_HOST=127.0.0.1:PORT), DIR/pubsub.pid and DIR/pubsub.log.
#       Prints PUBSUB_EMULATOR_HOST's value (127.0.0.1:PORT) on stdout. With --owner-pid,
#       a watchdog stops the emulator when PID exits (and with --rm-dir deletes DIR).
#   scripts/pubsub-emulator.sh stop --dir DIR
#       Stop what `start` started (TERM, then KILL), by pid. Idempotent.
#   scripts/pubsub-emulator.sh jar
#       Print the emulator jar's path.
#
# Needs java (17+) and the SDK's pubsub-emulator component; PUBSUB_EMULATOR_JAR overrides
# the jar's location. The emulator keeps everything in memory: a restart starts empty.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_PATH="${SCRIPT_DIR}/$(basename "${BASH_SOURCE[0]}")"

log() { printf 'pubsub-emulator: %s\n' "$*" >&2; }
die() { printf 'pubsub-emulator: error: %s\n' "$*" >&2; exit 1; }

cmd_jar() {
    local root jar
    if [[ -n "${PUBSUB_EMULATOR_JAR:-}" ]]; then
        [[ -f "$PUBSUB_EMULATOR_JAR" ]] || die "PUBSUB_EMULATOR_JAR=${PUBSUB_EMULATOR_JAR} is not a file"
        printf '%s\n' "$PUBSUB_EMULATOR_JAR"
        return
    fi
    command -v gcloud >/dev/null 2>&1 \
        || die "gcloud is not installed: install the Google Cloud SDK with its pubsub-emulator component, or set PUBSUB_EMULATOR_JAR"
    # The SDK root is the parent of gcloud's bin/ (fast); `gcloud info` (2 s of Python)
    # only when that layout does not hold.
    root="$(dirname "$(dirname "$(readlink -f "$(command -v gcloud)")")")"
    if [[ ! -d "${root}/platform/pubsub-emulator/lib" ]]; then
        root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)" \
            || die "'gcloud info' failed: cannot find the Google Cloud SDK's root"
    fi
    # The newest version when several are present.
    jar="$(find "${root}/platform/pubsub-emulator/lib" -maxdepth 1 -name 'cloud-pubsub-emulator-*-all.jar' 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$jar" ]] \
        || die "no cloud-pubsub-emulator-*-all.jar under ${root}/platform/pubsub-emulator/lib: run 'gcloud components install pubsub-emulator' (or apt-get install google-cloud-cli-pubsub-emulator)"
    printf '%s\n' "$jar"
}

pid_alive() { # pid_alive PIDFILE
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pidfile() { # stop_pidfile PIDFILE
    local f="$1" pid i
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$(basename "$f" .pid) (pid ${pid}) ignored TERM; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

stop_dir() { # stop_dir DIR
    local dir="$1"
    # The watchdog first, so it does not race with us (unless we are it).
    if [[ "${BINAUTHZ_PUBSUB_WATCHDOG:-}" != 1 ]]; then
        stop_pidfile "${dir}/watchdog.pid"
    else
        rm -f "${dir}/watchdog.pid"
    fi
    stop_pidfile "${dir}/pubsub.pid"
}

cmd_stop() {
    local dir=""
    while (($#)); do
        case "$1" in
            --dir) dir="${2:-}"; shift 2 || die "--dir needs a value" ;;
            *) die "stop: unknown argument $1" ;;
        esac
    done
    [[ -n "$dir" ]] || die "usage: $0 stop --dir DIR"
    [[ -d "$dir" ]] || return 0
    stop_dir "$dir"
}

port_in_use() { # port_in_use PORT
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A random loopback port below the usual ephemeral range, not listening now. Between this
# check and the bind another process may take it: start retries.
free_port() {
    local port i
    for ((i = 0; i < 50; i++)); do
        port=$((20000 + RANDOM % 12000))
        port_in_use "$port" || { printf '%s\n' "$port"; return 0; }
    done
    die "no free loopback port found"
}

# Starts the jar on PORT and waits until it answers. Returns 2 when the port was taken.
start_once() { # start_once DIR JAR PORT DEADLINE
    local dir="$1" jar="$2" port="$3" deadline="$4" pid
    : >"${dir}/pubsub.log"
    # setsid: its own process group, so a Ctrl-C meant for the caller's foreground job
    # does not reach it before the watchdog or `stop` does.
    setsid java ${PUBSUB_EMULATOR_JAVA_OPTS:--Xms64m -Xmx512m -XX:+UseSerialGC} \
        -jar "$jar" --host=127.0.0.1 --port="$port" \
        >>"${dir}/pubsub.log" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"${dir}/pubsub.pid"
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            if grep -qiE 'address already in use|BindException' "${dir}/pubsub.log"; then
                return 2
            fi
            log "the emulator exited during start-up; its log:"
            tail -n 20 "${dir}/pubsub.log" >&2
            return 1
        fi
        if curl -sf --max-time 1 "http://127.0.0.1:${port}/" >/dev/null 2>&1; then
            # Ours, not another process that answers on this port?
            grep -q "listening on ${port}" "${dir}/pubsub.log" && return 0
        fi
        if (($(date +%s) >= deadline)); then
            log "the emulator did not answer on 127.0.0.1:${port} in time; its log:"
            tail -n 20 "${dir}/pubsub.log" >&2
            return 1
        fi
        sleep 0.1
    done
}

start_watchdog() { # start_watchdog DIR OWNER_PID RM_DIR
    local dir="$1" owner="$2" rm_dir="$3" starttime=""
    # The owner's start time guards against its PID being reused.
    if [[ -r "/proc/${owner}/stat" ]]; then
        starttime="$(sed 's/^.*) //' "/proc/${owner}/stat" | cut -d' ' -f20)"
    fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    BINAUTHZ_PUBSUB_WATCHDOG=1 setsid bash -c '
        owner="$1" starttime="$2" script="$3" dir="$4" rm_dir="$5"
        alive() {
            kill -0 "$owner" 2>/dev/null || return 1
            [[ -z "$starttime" ]] && return 0
            local stat
            stat="$(sed "s/^.*) //" "/proc/$owner/stat" 2>/dev/null)" || return 1
            # Fields after the command: state is 1st, start time 20th; a zombie is gone.
            [[ "${stat%% *}" != Z ]] || return 1
            [[ "$(cut -d" " -f20 <<<"$stat")" == "$starttime" ]]
        }
        while alive; do sleep 1; done
        echo "owner $owner is gone; stopping the Pub/Sub emulator in $dir"
        "$script" stop --dir "$dir"
        if [[ "$rm_dir" == 1 ]]; then rm -rf "$dir"; fi
    ' pubsub-watchdog "$owner" "$starttime" "$SCRIPT_PATH" "$dir" "$rm_dir" \
        >>"${dir}/watchdog.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"${dir}/watchdog.pid"
}

cmd_start() {
    local dir="" owner="" rm_dir=0 port="" jar attempt rc t0 deadline chosen
    while (($#)); do
        case "$1" in
            --dir) dir="${2:-}"; shift 2 || die "--dir needs a value" ;;
            --port) port="${2:-}"; shift 2 || die "--port needs a value" ;;
            --owner-pid) owner="${2:-}"; shift 2 || die "--owner-pid needs a value" ;;
            --rm-dir) rm_dir=1; shift ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    [[ -n "$dir" ]] || die "usage: $0 start --dir DIR [--port PORT] [--owner-pid PID] [--rm-dir]"
    if [[ -n "$port" ]]; then
        [[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "--port must be a port number"
    fi
    if [[ -n "$owner" ]]; then
        [[ "$owner" =~ ^[0-9]+$ ]] || die "--owner-pid must be a number"
        kill -0 "$owner" 2>/dev/null || die "owner process ${owner} is not running"
    fi
    command -v java >/dev/null 2>&1 || die "java is not installed: the Pub/Sub emulator needs a Java 11+ runtime (e.g. apt-get install openjdk-17-jre-headless)"
    for tool in curl setsid; do
        command -v "$tool" >/dev/null 2>&1 || die "${tool} is required"
    done
    jar="$(cmd_jar)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if pid_alive "${dir}/pubsub.pid"; then
        die "a Pub/Sub emulator is already running in ${dir}; run: $0 stop --dir ${dir}"
    fi
    t0=$(date +%s)
    # Whatever happens below, never leave an emulator behind.
    trap 'stop_dir "$dir"' EXIT
    trap 'exit 130' INT TERM
    deadline=$((t0 + ${BINAUTHZ_PUBSUB_START_TIMEOUT:-60}))
    for attempt in 1 2 3 4; do
        chosen="${port:-$(free_port)}"
        rc=0
        start_once "$dir" "$jar" "$chosen" "$deadline" || rc=$?
        if ((rc == 0)); then break; fi
        stop_pidfile "${dir}/pubsub.pid"
        if ((rc == 2)) && [[ -n "$port" ]]; then
            die "port ${port} is taken (by another process?)"
        fi
        if ((rc == 2 && attempt < 4)) && (($(date +%s) < deadline)); then
            log "port ${chosen} taken between choice and bind; retrying (attempt $((attempt + 1)))"
            continue
        fi
        die "the Pub/Sub emulator did not start (log: ${dir}/pubsub.log)"
    done
    printf 'PUBSUB_EMULATOR_HOST=127.0.0.1:%s\n' "$chosen" >"${dir}/env"
    if [[ -n "$owner" ]]; then
        start_watchdog "$dir" "$owner" "$rm_dir"
    fi
    trap - EXIT INT TERM
    log "ready in $(($(date +%s) - t0)) s: PUBSUB_EMULATOR_HOST=127.0.0.1:${chosen} (pid $(cat "${dir}/pubsub.pid"))"
    printf '127.0.0.1:%s\n' "$chosen"
}

usage() {
    sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local sub="${1:-}"
    (($#)) && shift
    case "$sub" in
        jar) cmd_jar "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        -h | --help | help | "") usage ;;
        *) die "unknown subcommand ${sub} (start, stop, jar)" ;;
    esac
}

main "$@"; exit $?  # one line: bash must not read on if this file changes meanwhile
