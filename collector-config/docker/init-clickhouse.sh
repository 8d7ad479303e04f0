#!/bin/sh
# One-shot set-up of the ClickHouse of docker-compose.yaml, as its admin user: the tables (`omtel schema apply`)
# and the two users of collector-config/clickhouse/users.sql, with their passwords from the environment.
# Safe to run again: every statement is IF NOT EXISTS (so a changed password needs `docker compose down -v`).
#
#   CLICKHOUSE_HOST                            the server (port 8123)
#   CLICKHOUSE_USER, CLICKHOUSE_PASSWORD       the admin (CREATE and access management); read by omtel too
#   OTEL_WRITER_PASSWORD, OTEL_READER_PASSWORD passwords of otel_writer (the collector) and otel_reader
#   OMTEL_TTL_DAYS                             optional retention in days
set -eu

omtel schema apply --store "clickhouse://${CLICKHOUSE_HOST}:8123/otel" ${OMTEL_TTL_DAYS:+--ttl-days "$OMTEL_TTL_DAYS"}

python - /opt/omegaml-otel/collector-config/clickhouse/users.sql <<'PY'
import os
import sys

import clickhouse_connect


def literal(password):
    """The password as it goes between the quotes of users.sql's string literals."""
    return password.replace("\\", "\\\\").replace("'", "\\'")


text = "\n".join(ln for ln in open(sys.argv[1]).read().splitlines() if not ln.lstrip().startswith("--"))
client = clickhouse_connect.get_client(host=os.environ["CLICKHOUSE_HOST"], port=8123,
                                       username=os.environ["CLICKHOUSE_USER"],
                                       password=os.environ["CLICKHOUSE_PASSWORD"])
# split before filling in, so that a ';' in a password cannot split a statement
for stmt in filter(None, (s.strip() for s in text.split(";"))):
    client.command(stmt.replace("{writer_password}", literal(os.environ["OTEL_WRITER_PASSWORD"]))
                       .replace("{reader_password}", literal(os.environ["OTEL_READER_PASSWORD"])))
print("users otel_writer and otel_reader are set up")
PY
