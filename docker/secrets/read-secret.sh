#!/bin/sh
# Sourced (`. "$(dirname "$0")/read-secret.sh"`) by the compose entrypoints that read the files
# secrets-init generated; compose mounts it beside each of them under /scripts/.
# `secret NAME` prints the first line of $SECRETS_DIR/NAME, or stops the calling script with a
# message naming the missing or empty secret.

secret() {
    value=""
    if [ -r "$SECRETS_DIR/$1" ]; then
        IFS= read -r value <"$SECRETS_DIR/$1" || [ -n "$value" ]
    fi
    if [ -z "$value" ]; then
        echo "$(basename "$0" .sh): secret $1 is missing or empty in $SECRETS_DIR" >&2
        exit 1
    fi
    printf '%s' "$value"
}
