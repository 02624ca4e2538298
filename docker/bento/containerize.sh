#!/usr/bin/env bash
# On a host with Docker, in the repository: the champion's bento -> the serving images that
# docker-compose.yaml runs (pawpularity-service:gpu for `bento`, :cpu for `bento-cpu`).
#
#   bash docker/bento/containerize.sh            # both variants
#   bash docker/bento/containerize.sh gpu        # or one
#
# For each variant:
#  1. in the Airflow image, beside the BentoML store the DAG's export task fills,
#     docker/bento/bento-export.sh builds (or reuses) the variant's bento for the current
#     champion and writes it with `bentoml export` as one .bento archive -- models included;
#  2. the archive is streamed out to build/bento/ (a file, no folder copy, no permissions);
#  3. `bentoml import` puts bento and models into the host store build/bentoml (skipped when
#     that exact tag is already there);
#  4. `bentoml containerize` builds the image from that store.
# Needs: the stack running (MLflow answers `pawpaw export`), bentoml 1.4.40 on the host (the
# project's venv: `uv sync`, then `source .venv/bin/activate`), Docker with BuildKit.
# Settings: BENTO_TAG (containerize this bento instead of the champion's), BENTO_IMAGE_NAME
# (default pawpularity-service), COMPOSE / BENTOML (the commands; default `docker compose` and
# `bentoml`), BENTO_ARCHIVE_DIR (default build/bento), BENTOML_HOME (default build/bentoml).
set -euo pipefail
cd "$(dirname "$0")/../.."

read -r -a compose <<<"${COMPOSE:-docker compose}"
read -r -a bentoml <<<"${BENTOML:-bentoml}"
archives="${BENTO_ARCHIVE_DIR:-build/bento}"
export BENTOML_HOME="${BENTOML_HOME:-$PWD/build/bentoml}"
export BENTOML_DO_NOT_TRACK=true
image="${BENTO_IMAGE_NAME:-pawpularity-service}"
exports=/opt/airflow/bentoml/exports  # $BENTOML_HOME/exports inside the Airflow image
mkdir -p "$archives" "$BENTOML_HOME"

# One-off containers of the Airflow image with the stack's volumes; no DB wait, no TTY (the
# archive is streamed through stdout).
in_airflow() {
    "${compose[@]}" run --rm --no-deps -T -e CONNECTION_CHECK_MAX_COUNT=0 "$@"
}

variants=("$@")
[ "${#variants[@]}" -gt 0 ] || variants=(gpu cpu)
for variant in "${variants[@]}"; do
    case "$variant" in
        gpu | cpu) ;;
        *) echo "containerize: variant must be gpu or cpu, not '$variant'" >&2; exit 2 ;;
    esac
    echo "containerize: [$variant] exporting the bento in the Airflow image" >&2
    # shellcheck disable=SC2086  # BENTO_TAG: zero or one word
    in_airflow airflow-cli bash /opt/airflow/scripts/bento-export.sh "$variant" ${BENTO_TAG:-} >&2

    archive="$archives/pawpularity-$variant.bento"
    in_airflow --entrypoint cat airflow-cli "$exports/pawpularity-$variant.bento" >"$archive.part"
    mv -f "$archive.part" "$archive"
    tag="$(in_airflow --entrypoint cat airflow-cli "$exports/pawpularity-$variant.tag" | tr -d '\r\n')"
    [ -n "$tag" ] || { echo "containerize: no tag for the $variant archive" >&2; exit 1; }
    echo "containerize: [$variant] $tag -> $archive ($(wc -c <"$archive") bytes)" >&2

    if "${bentoml[@]}" get "$tag" >/dev/null 2>&1; then
        echo "containerize: [$variant] $tag is already in $BENTOML_HOME" >&2
    else
        "${bentoml[@]}" import "$archive" >&2
    fi
    "${bentoml[@]}" containerize "$tag" -t "$image:$variant" >&2
    echo "containerize: [$variant] image $image:$variant from $tag"
done
