-- The data version: a counter that every committed change to the stored data raises, in the
-- committing transaction itself, so that answers computed from the data can be kept by version
-- (src/http/cache.rs) and are never served after a later commit. PostgreSQL keeps it, so no
-- write path (HTTP, `archdb import`, a worker, psql) can forget it.
--
-- Raising a shared counter at each write statement would hold its row lock until commit and
-- serialise every writing transaction (an upload would wait for a whole import). Instead each
-- write statement only marks its transaction (one row in data_version_pending, inserted once),
-- and a deferred trigger raises the counter at commit, holding the lock for the commit alone.
-- A rolled-back transaction (or savepoint) drops its mark and raises nothing.
create table data_version (
    id      boolean primary key default true check (id),
    version bigint  not null
);
insert into data_version (version) values (1);

-- Transactions that changed data and have not committed yet (empty outside of them).
create table data_version_pending (
    xid xid8 primary key
);

-- Statement-level: one call per statement however many rows a COPY or INSERT … SELECT writes.
create function data_version_mark() returns trigger language plpgsql as $$
begin
    insert into data_version_pending (xid) values (pg_current_xact_id()) on conflict do nothing;
    return null;
end $$;

create function data_version_raise() returns trigger language plpgsql as $$
begin
    update data_version set version = version + 1;
    delete from data_version_pending where xid = new.xid;
    return null;
end $$;

-- Fires at commit, once per marking transaction (one mark row each).
create constraint trigger data_version_raise after insert on data_version_pending
    deferrable initially deferred for each row execute function data_version_raise();

-- Every table the API reads answers from. Left out: the job queue (`jobs`, written by every
-- worker heartbeat; no kept answer reads it) and the two tables above. A new table must be
-- added here by its migration; tests/api/cache.rs fails for one that is not.
do $$
declare
    t text;
begin
    foreach t in array array[
        'architectures', 'architecture_graphs', 'architecture_onnx', 'architecture_aliases',
        'imports', 'results', 'lemur_code', 'lemur_run', 'lemur_nn_stat',
        'calibration_runs', 'calibration_metrics', 'predictors', 'predictor_index', 'starter_set'
    ] loop
        execute format(
            'create trigger data_version_mark after insert or update or delete or truncate on %I
             for each statement execute function data_version_mark()', t);
    end loop;
end $$;
