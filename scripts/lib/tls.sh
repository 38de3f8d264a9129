# shellcheck shell=bash
# Certificates for DICOM TLS in development and tests, made with openssl;
# sourced, not run.
#
#   make_ca DIR NAME [SUBJECT]
#       A self-signed CA: DIR/NAME.pem (certificate) and DIR/NAME.key. SUBJECT
#       defaults to "/O=secondread development/CN=NAME CA".
#   issue_cert CA OUT SUBJECT [--server|--client] [--san LIST] [--days N]
#              [--not-before YYYYMMDDHHMMSSZ] [--not-after YYYYMMDDHHMMSSZ]
#       A certificate signed by the CA whose files are CA.pem and CA.key:
#       OUT.pem and OUT.key (a fresh RSA 2048 key; the BCP 195 cipher suites
#       of TLS 1.2 need RSA). --server and --client set the extended key usage
#       (both when neither is given); --san a subjectAltName list such as
#       "IP:127.0.0.1,DNS:localhost". The validity is N days from now (365 by
#       default) unless --not-before/--not-after give it, e.g. a certificate
#       that expired in 2020 for a negative test.
#   cert_subject FILE
#       The certificate's subject in RFC 2253 form, as dicom.tls.caller_subjects
#       wants it: openssl x509 -noout -subject -nameopt RFC2253 without the
#       "subject=" prefix.
#
# Keys are written unencrypted with mode 0600: they are for throwaway CAs.

tls_openssl() {
  command -v openssl >/dev/null 2>&1 || { echo "openssl not found" >&2; return 1; }
  openssl "$@"
}

make_ca() {  # dir name [subject]
  local dir=$1 name=$2 subject=${3:-"/O=secondread development/CN=$2 CA"}
  mkdir -p "$dir"
  (umask 077; tls_openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$name.key" 2>/dev/null) ||
    { echo "make_ca: cannot make a key in $dir" >&2; return 1; }
  tls_openssl req -x509 -new -key "$dir/$name.key" -sha256 -days 3650 -subj "$subject" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/$name.pem" 2>/dev/null || { echo "make_ca: openssl req failed for $subject" >&2; return 1; }
}

issue_cert() {  # ca out subject [options]
  local ca=$1 out=$2 subject=$3
  shift 3
  local usage="serverAuth,clientAuth" san="" days=365 not_before="" not_after=""
  while [ $# -gt 0 ]; do
    case $1 in
      --server) usage="serverAuth"; shift ;;
      --client) usage="clientAuth"; shift ;;
      --san) san=$2; shift 2 ;;
      --days) days=$2; shift 2 ;;
      --not-before) not_before=$2; shift 2 ;;
      --not-after) not_after=$2; shift 2 ;;
      *) echo "issue_cert: unknown option $1" >&2; return 2 ;;
    esac
  done
  [ -f "$ca.pem" ] && [ -f "$ca.key" ] || { echo "issue_cert: no CA at $ca.pem / $ca.key" >&2; return 1; }
  mkdir -p "$(dirname "$out")"
  (umask 077; tls_openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out.key" 2>/dev/null) ||
    { echo "issue_cert: cannot make a key for $out" >&2; return 1; }
  # openssl ca takes explicit validity dates, which x509 -req (before
  # OpenSSL 3.4) does not; it wants a scratch database.
  local work
  work=$(mktemp -d)
  touch "$work/index.txt"
  tls_openssl rand -hex 16 >"$work/serial"
  {
    echo "[ca]"
    echo "default_ca = dev"
    echo "[dev]"
    echo "database = $work/index.txt"
    echo "serial = $work/serial"
    echo "new_certs_dir = $work"
    echo "default_md = sha256"
    echo "policy = any"
    echo "unique_subject = no"
    echo "copy_extensions = none"
    echo "[any]"
    echo "commonName = optional"
    echo "organizationName = optional"
    echo "organizationalUnitName = optional"
    echo "countryName = optional"
    echo "localityName = optional"
    echo "stateOrProvinceName = optional"
    echo "[ext]"
    echo "basicConstraints = critical,CA:FALSE"
    echo "keyUsage = critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage = $usage"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    if [ -n "$san" ]; then echo "subjectAltName = $san"; fi
  } >"$work/ca.cnf"
  local dates=(-days "$days")
  if [ -n "$not_before" ] || [ -n "$not_after" ]; then
    dates=()
    [ -n "$not_before" ] && dates+=(-startdate "$not_before")
    [ -n "$not_after" ] && dates+=(-enddate "$not_after")
  fi
  local rc=0
  tls_openssl req -new -key "$out.key" -subj "$subject" -out "$work/req.csr" 2>"$work/err" &&
    tls_openssl ca -batch -notext -config "$work/ca.cnf" -extensions ext -cert "$ca.pem" -keyfile "$ca.key" \
      -preserveDN "${dates[@]}" -in "$work/req.csr" -out "$out.pem" 2>"$work/err" >/dev/null || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "issue_cert: openssl failed for $subject:" >&2
    cat "$work/err" >&2
  fi
  rm -rf "$work"
  return "$rc"
}

cert_subject() {  # file
  local s
  s=$(tls_openssl x509 -in "$1" -noout -subject -nameopt RFC2253) || return 1
  echo "${s#subject=}"
}
