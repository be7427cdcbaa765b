#!/usr/bin/env bash
# Make a throw-away PKI for the TLS tests in DIR (EC P-256, valid 2 days):
#
#   ca.crt ca.key            the test CA
#   server.crt server.key    broker certificate: CN=localhost, SAN
#                            DNS:localhost, IP:127.0.0.1
#   badhost.crt badhost.key  broker certificate from the same CA for another
#                            host name (wrong.example): fails host checks
#   NAME.crt NAME.key        a client certificate with CN=NAME, for every
#                            NAME given after DIR
#   rogue-ca.crt             another CA, and rogue.crt/rogue.key, a client
#                            certificate it signed (CN=pump-1): not trusted
#
# Private keys are mode 0600. Usage: mkcerts.sh DIR [NAME...]
set -euo pipefail
dir=$1
shift
command -v openssl >/dev/null || { echo "mkcerts: openssl is not installed" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077

ca() { # ca NAME CN
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$1.key" -out "$1.crt" -days 2 -subj "/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # leaf NAME CN CA EXTENSIONS
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
	printf '%b' "$4" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial \
		-out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

ca ca fedvigil-test-ca
ca rogue-ca fedvigil-rogue-ca
leaf server localhost ca \
	"basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
leaf badhost wrong.example ca \
	"basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:wrong.example\n"
leaf rogue pump-1 rogue-ca "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
for n in "$@"; do
	leaf "$n" "$n" ca "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
done
# Certificates are public; the broker (maybe another user) reads them.
chmod 644 ./*.crt
