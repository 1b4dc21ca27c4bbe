# What the scripts here share, sourced as `. "$(dirname "$0")/lib.sh"`: installing what is
# missing, a free loopback port, waiting for a log line, a throwaway certificate. Loopback
# only; nothing here starts or stops a process.

# need COMMAND [PACKAGE]: installs PACKAGE (default: COMMAND) from Debian's packages when
# COMMAND is not on the PATH.
need() {
    command -v "$1" >/dev/null 2>&1 || need_package "${2:-$1}"
}

# need_package PACKAGE: installs it from Debian's packages (for what is not a command: a
# module, a data file); `apt-get update` runs at most once per script.
need_package() {
    echo "installing $1 (apt-get)" >&2
    if [ -z "${LIB_APT_UPDATED:-}" ]; then
        apt-get update -qq
        LIB_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

# free_port: a loopback TCP port nothing is bound to now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_line FILE PATTERN [SECONDS]: waits (5 s by default) until a line of FILE matches
# PATTERN (grep -E); fails, showing FILE, if none does.
wait_for_line() {
    local file=$1 pattern=$2 tries=$(( ${3:-5} * 20 ))
    for _ in $(seq "$tries"); do
        grep -qE "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "no line matching '$pattern' in $file:" >&2
    cat "$file" >&2 2>/dev/null || true
    return 1
}

# self_signed_certificate DIR SUBJECT_ALT_NAMES: a throwaway ECDSA P-256 certificate for
# localhost, valid a day, as DIR/cert.pem and DIR/key.pem (needs openssl).
self_signed_certificate() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
        -addext "subjectAltName=$2" -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# ca_signed_certificate DIR SUBJECT_ALT_NAMES: a throwaway CA (DIR/ca.pem) and a certificate
# for localhost it signed (DIR/cert.pem, DIR/key.pem), ECDSA P-256, valid a day: for clients
# (rustls' webpki) that refuse a self-signed certificate as a server's (needs openssl).
ca_signed_certificate() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=throwaway-ca \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        -keyout "$1/ca-key.pem" -out "$1/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$1/key.pem" -out "$1/request.pem" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$2" >"$1/extensions"
    openssl x509 -req -in "$1/request.pem" -CA "$1/ca.pem" -CAkey "$1/ca-key.pem" -CAcreateserial \
        -days 1 -extfile "$1/extensions" -out "$1/cert.pem" 2>/dev/null
}
