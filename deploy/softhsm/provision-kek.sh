#!/usr/bin/env bash
# Provisions a node's key-encryption key in SoftHSM2: a token of its own and an AES-256
# key that never leaves it. docs/operations.md shows these commands, and
# testnet/tests/kek_hsm.rs runs this file, so both stay true.
#
# Usage: HSM_DIR=/var/lib/softhsm-quorate PIN_FILE=/etc/quorate/hsm.pin \
#        SO_PIN_FILE=/root/hsm-so.pin TOKEN_LABEL=quorate-node-1 provision-kek.sh
set -euo pipefail
: "${HSM_DIR:?}" "${PIN_FILE:?}" "${SO_PIN_FILE:?}" "${TOKEN_LABEL:?}"
MODULE=${MODULE:-/usr/lib/softhsm/libsofthsm2.so}

# SoftHSM keeps its tokens in a directory named by its config file.
mkdir -p "$HSM_DIR/tokens"
echo "directories.tokendir = $HSM_DIR/tokens" > "$HSM_DIR/softhsm2.conf"
export SOFTHSM2_CONF="$HSM_DIR/softhsm2.conf"

softhsm2-util --init-token --free --label "$TOKEN_LABEL" \
  --so-pin "$(cat "$SO_PIN_FILE")" --pin "$(cat "$PIN_FILE")"
# --sensitive: the key's value can never be read out of the token.
pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" --login \
  --pin "$(cat "$PIN_FILE")" --keygen --key-type AES:32 --label quorate-kek --sensitive
