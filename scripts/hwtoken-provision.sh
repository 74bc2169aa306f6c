#!/usr/bin/env bash
# Prepares the hardware stand-ins that ../shared/tools/hwtoken/up.sh DIR brought up for the
# hardware-signer tests: gives the emulated PIV card's slot 9c a certificate.
#
# Why: ykcs11 2.2 (Debian 12's) lists a PIV key only when its slot holds a certificate, as most
# deployed YubiKeys' slots do. The emulated card cannot self-sign one (its slot-9c key wants a
# PIN verified in the same transaction as the signature, which yubico-piv-tool's selfsign does
# not do), so a throwaway CA signs a certificate for the slot's public key. Idempotent.
# Usage: hwtoken-provision.sh DIR   (the DIR given to up.sh; DIR/env must exist)
set -euo pipefail
DIR=${1:?usage: hwtoken-provision.sh DIR}
# shellcheck source=/dev/null
. "$DIR/env"
exec 9>"$DIR/card.lock"
flock 9
if yubico-piv-tool -a read-certificate -s 9c >/dev/null 2>&1; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
openssl req -new -key "$work/ca.key" -subj "/CN=triplicate test PIV 9c/" -out "$work/req.csr"
openssl x509 -req -in "$work/req.csr" -signkey "$work/ca.key" -force_pubkey "$HWTOKEN_PIV_9C_PUBKEY" \
  -days 3650 -out "$DIR/piv-9c-cert.pem" 2>/dev/null
yubico-piv-tool -a import-certificate -s 9c -i "$DIR/piv-9c-cert.pem" >/dev/null
echo "hwtoken-provision: slot 9c has a certificate for its key ($DIR/piv-9c-cert.pem)" >&2
