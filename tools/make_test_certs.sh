#!/usr/bin/env bash
# Throw-away certificates for the TLS specs and the https benchmark.
# Usage: tools/make_test_certs.sh DIR
# Writes into DIR (P-256 keys, made in well under a second):
#   ca.pem ca.key            the test CA ("luaio test CA")
#   server.pem server.key    signed by the CA, for localhost and 127.0.0.1 / ::1
#   expired.pem expired.key  signed by the CA, for localhost, expired yesterday
#   other-ca.pem             a CA nobody trusts
#   stranger.pem stranger.key  signed by other-ca, for localhost
#   client.pem client.key    signed by the CA, a client certificate (CN=luaio client)
set -euo pipefail
dir=${1:?usage: make_test_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {   # ca NAME SUBJECT
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # leaf NAME CA DAYS CN SAN
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$4" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\n' "$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days "$3" \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "luaio test CA"
ca other-ca "luaio untrusted CA"
leaf server ca 825 localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf expired ca -1 localhost "DNS:localhost,IP:127.0.0.1"
leaf stranger other-ca 825 localhost "DNS:localhost,IP:127.0.0.1"
leaf client ca 825 "luaio client" "DNS:client.test"
rm -f ./*.srl
