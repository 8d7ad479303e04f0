-- omegaml-otel: ClickHouse users for the collector path.
--
--   otel_writer  the collector's user (otelcol-contrib clickhouse exporter, rotel): INSERT into the otel tables,
--                plus SHOW COLUMNS for a `DESC TABLE` probe. otelcol-contrib v0.135 does not probe: it inserts a
--                fixed, named column list per table. Later releases run `DESC TABLE` at start to find optional
--                columns such as EventName (and, where it is denied, insert without them); rotel's repository
--                HEAD runs `DESCRIBE TABLE` too, its PyPI agent does not. The writer cannot read rows (no SELECT),
--                and cannot create, alter, drop or truncate anything.
--   otel_reader  the user for `omtel` / `OMTEL_STORE=clickhouse://otel_reader:…@host:8123/otel` and Grafana:
--                SELECT only, with readonly = 2 fixed (CONST): no INSERT, ALTER, DROP, CREATE or TRUNCATE even if
--                someone later grants more; it may still change query settings (Grafana and clickhouse-connect
--                send settings with their queries, which readonly = 1 would refuse). `omtel schema status` works
--                as this user; `omtel schema apply` needs an admin (CREATE and ALTER).
--
-- Placeholders, to be replaced before running (the file is not valid SQL until then):
--   {writer_password}   password of otel_writer
--   {reader_password}   password of otel_reader
-- Passwords are stored as SHA-256 hashes. Example, as an admin user (access_management = 1):
--   sed -e "s/{writer_password}/$WRITER_PW/" -e "s/{reader_password}/$READER_PW/" users.sql \
--     | clickhouse-client --user admin --password "$ADMIN_PW" --multiquery
--
-- The database is `otel` (the default of `omtel schema apply`); if you applied the schema to another database,
-- replace `otel` below too. Apply the schema first: the grants name the database, not single tables, so tables
-- added later (and the otel_traces_trace_id_ts table that a materialized view fills on insert) are covered, and an
-- upgrade by `omtel schema apply` (new tables, columns, indexes) needs no new grants.

CREATE USER IF NOT EXISTS otel_writer
    IDENTIFIED WITH sha256_password BY '{writer_password}'
    DEFAULT DATABASE otel;

GRANT INSERT, SHOW COLUMNS ON otel.* TO otel_writer;

CREATE USER IF NOT EXISTS otel_reader
    IDENTIFIED WITH sha256_password BY '{reader_password}'
    DEFAULT DATABASE otel
    SETTINGS readonly = 2 CONST;

GRANT SELECT ON otel.* TO otel_reader;
