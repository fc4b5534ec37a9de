#!/bin/sh
# Generate the compose secrets once: ./init-secrets.sh [DIR]   (DIR defaults to ./secrets next to this file)
#
#   master.key         the llm-config master key (base64 of 32 random bytes, what `llm-config keygen` prints)
#   postgres-password  PostgreSQL's password for the llmconfig role (read by the postgres image at first start)
#   pgpass             the same password as a libpq password file (PGPASSFILE) for the replicas and `migrate`
#
# An existing file is never overwritten (a new master key would lock you out of every secret). Files are
# created 0600; when run as root they are given to uid/gid 10001, the user the llm-config containers run as
# (rootless podman: run `podman unshare chown 10001:10001 FILES` instead). Needs only sh and openssl.
set -eu
umask 077
dir=${1:-"$(dirname "$0")/secrets"}
owner=${LLM_CONFIG_SECRETS_OWNER:-10001:10001}
mkdir -p "$dir"
cd "$dir"

if [ ! -e master.key ]; then
    openssl rand -base64 32 > master.key
    echo "created $dir/master.key"
fi
if [ ! -e postgres-password ]; then
    # hex: nothing a pgpass line would need to escape (':' and '\')
    openssl rand -hex 32 | tr -d '\n' > postgres-password
    echo "created $dir/postgres-password"
fi
if [ ! -e pgpass ]; then
    printf '*:*:llmconfig:llmconfig:%s\n' "$(cat postgres-password)" > pgpass
    echo "created $dir/pgpass"
fi
chmod 600 master.key postgres-password pgpass
if [ "$(id -u)" = 0 ]; then
    chown "$owner" master.key postgres-password pgpass
else
    echo "now give the files to the containers' user: sudo chown $owner $dir/master.key $dir/postgres-password $dir/pgpass"
fi
