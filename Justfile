# mcsv task runner. On a fresh machine use ./justw <recipe>; it bootstraps .venv and just.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
export PATH := venv / "bin" + ":" + env_var("PATH")

# List the recipes.
default:
    @just --list

# Create .venv and install the project, the generated contracts and the dev toolchain
# (again only when a pyproject.toml changed).
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp="{{venv}}/.installed-$(cat pyproject.toml gen/pyproject.toml | sha256sum | cut -c1-16)"
    [ -e "$stamp" ] && exit 0
    test -x {{venv}}/bin/python || python3 -m venv {{venv}}
    {{venv}}/bin/python -m pip install --quiet --upgrade pip
    {{venv}}/bin/python -m pip install --quiet -e "./gen[server]" -e ".[dev]"
    rm -f {{venv}}/.installed-* && touch "$stamp"

# Install ImageMagick (apt) and the project's hardened ImageMagick policy, then check that a
# PNG -> PDF conversion works. Needs root (uses sudo when not root).
setup-imagemagick: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" = 0 ]; then
        {{venv}}/bin/python -m internal.imaging.install_policy
    else
        sudo {{venv}}/bin/python -m internal.imaging.install_policy
    fi

# Bring the whole system up on this machine (five services, job workers), run both workflows
# once, then show the logs until Ctrl-C. Settings: environment and .env (see .env.example).
up *args: setup-imagemagick
    python cmd/up.py --demo {{args}}

# Drive the running system: `just client demo` or `just client load --users 1000 --images 20`.
client *args: setup
    python cmd/client_svc.py {{args}}

# Every performance goal measured in one run, printed as one table (figure, peer, ratio,
# goal): just bench [--quick] [--only P1,P3]. Takes minutes; --quick only proves it runs.
bench *args: setup-imagemagick
    python -m tests.bench {{args}}

# Load-mode figures on each backend combination, side by side (needs the machine's
# PostgreSQL, RabbitMQ and Redis): just bench-backends [--users N --images M --workers W].
bench-backends *args: setup-imagemagick
    python -m tests.bench.backends {{args}}

# just chaos [--users 3000 --images 20 --backend embedded|postgres-rabbitmq-s3 --stop-seconds 30]:
# the whole system under the supervisor while user_svc, a worker and job_svc are SIGKILLed and
# email_svc hangs, then an account of every workflow, exit 1 unless perfect (tests/chaos.py).
# Chaos run: kills and hangs processes under load, then checks nothing was lost or doubled.
chaos *args: setup-imagemagick
    python -m tests.chaos {{args}}

# Regenerate gen/ from proto/ (protobuf modules, .pyi stubs, Twirp clients/servers, OpenAPI).
gen: setup
    rm -rf gen/mcsv
    buf generate

# Fail when gen/ is not exactly what `just gen` produces.
gen-check: gen
    #!/usr/bin/env bash
    set -euo pipefail
    changed="$(git status --porcelain -- gen)"
    if [ -n "$changed" ]; then
        echo "$changed"
        echo "gen/ differs from what 'just gen' produces: run 'just gen' and commit the result" >&2
        exit 1
    fi

# buf lint, ruff and mypy --strict.
lint: setup
    buf lint
    ruff check .
    ruff format --check .
    mypy internal tests

# Fail when proto/ is wire- or API-incompatible with the contracts of any earlier commit
# that changed them (every version ever published), or only with git ref `against`.
breaking against="": setup
    #!/usr/bin/env bash
    set -euo pipefail
    refs="{{against}}"
    [ -n "$refs" ] || refs="$(git log --format=%H -- proto)"
    if [ "$(git rev-parse --is-shallow-repository)" = true ] && [ -z "{{against}}" ]; then
        echo "a shallow clone: only the contracts of the commits it holds are compared" >&2
    fi
    for ref in $refs; do
        buf breaking --against ".git#ref=$ref,subdir=proto" || {
            echo "proto/ breaks the contracts of $ref" >&2; exit 1; }
    done
    echo "proto/ keeps the contracts of $(echo "$refs" | wc -w) earlier version(s)"

# Debian packages the tests use as real parts: Prometheus (and promtool). Needs root or sudo.
setup-tools:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v promtool >/dev/null && command -v prometheus >/dev/null && exit 0
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus

# Debian's headless browser for the browser tests (tests/browser): chromium and its
# chromium-driver, which Selenium drives. Needs root or sudo.
setup-browser:
    #!/usr/bin/env bash
    set -euo pipefail
    test -x /usr/bin/chromium && test -x /usr/bin/chromedriver && exit 0
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver

# Run the test suite (pass pytest arguments after the recipe name).
test *args: setup-imagemagick setup-tools setup-browser
    pytest {{args}}

# What CI runs: contracts, lint and tests.
ci: gen-check lint breaking test
    just bench --quick
