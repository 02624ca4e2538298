#!/usr/bin/env bash
# Inside the Airflow image (run by docker/bento/containerize.sh through `docker compose run`):
# the champion's bento as ONE archive that carries its models.
#
#   bento-export.sh {gpu|cpu} [BENTO_TAG]
#
# Without BENTO_TAG, `pawpaw export` (PAWPAW_SERVE_GPU=1 for gpu, 0 for cpu) builds -- or reuses,
# when nothing changed -- the bento of the current MLflow champion in $BENTOML_HOME (the
# `bentoml-store` volume the DAG's export task writes) and prints its tag. Then
# `bentoml export` writes $BENTO_EXPORT_DIR/pawpularity-<variant>.bento (default
# $BENTOML_HOME/exports) and its tag beside it in pawpularity-<variant>.tag.
# A bento folder alone is not enough: BentoML keeps models outside it ($BENTOML_HOME/models),
# and `bentoml containerize` looks there (then on BentoCloud) for every model the bento names.
set -euo pipefail

variant="${1:?usage: bento-export.sh gpu|cpu [BENTO_TAG]}"
tag="${2:-}"
case "$variant" in
    gpu) gpu=1 ;;
    cpu) gpu=0 ;;
    *) echo "bento-export: variant must be gpu or cpu, not '$variant'" >&2; exit 2 ;;
esac
out="${BENTO_EXPORT_DIR:-${BENTOML_HOME:?BENTOML_HOME is not set}/exports}"
mkdir -p "$out"

if [ -z "$tag" ]; then
    log="$(PAWPAW_SERVE_GPU="$gpu" pawpaw export)"
    printf '%s\n' "$log" >&2
    tag="$(printf '%s\n' "$log" | sed -n 's/^bento:[[:space:]]*//p' | tail -n 1)"
    if [ -z "$tag" ]; then
        echo "bento-export: \`pawpaw export\` printed no bento tag" >&2
        exit 1
    fi
fi

# The exact tag (name:version), never `latest`: the host skips importing a tag it already has.
tag="$(python -c 'import sys, bentoml; print(bentoml.bentos.get(sys.argv[1]).tag)' "$tag")"

# Write next to the target, then rename: a reader never sees a half-written archive.
archive="$out/pawpularity-$variant.bento"
partial="$out/.pawpularity-$variant.partial.bento"
rm -f "$partial"
python -m bentoml export "$tag" "$partial" >&2
mv -f "$partial" "$archive"
printf '%s\n' "$tag" >"$out/pawpularity-$variant.tag"
echo "bento-export: $tag -> $archive" >&2
