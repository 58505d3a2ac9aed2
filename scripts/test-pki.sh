#!/bin/sh
# Makes a throw-away PKI in DIR for the TLS tests (and for trying syslog over
# TLS by hand): a CA, a server certificate for localhost / 127.0.0.1, and a
# client certificate, all EC P-256, keys in PKCS#8 PEM.
#   scripts/test-pki.sh DIR
set -eu
dir=${1:?usage: test-pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
q() { openssl "$@" >/dev/null 2>&1; }
q genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
q req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=Custos test CA" -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
for who in server client; do
  q genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$who.key"
  q req -new -key "$who.key" -subj "/CN=$who.custos.test" -out "$who.csr"
  if [ "$who" = server ]; then
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' > ext
  else
    printf 'subjectAltName=DNS:client.custos.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n' > ext
  fi
  q x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 -extfile ext -out "$who.pem"
done
rm -f ext ./*.csr ca.srl
