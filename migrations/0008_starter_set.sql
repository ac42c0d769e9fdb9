-- Which parts of the bundled starter set (data/) this database holds, one row per import kind.
-- `archdb serve` loads every missing kind at start (src/import/seed.rs), so a first run that
-- was interrupted after NB201 still gets NB-Macro and LEMUR on the next start.
create table starter_set (
    -- the import kind (ImportKind::name): nb201, nb-macro, lemur, lemur-onnx
    kind       text        primary key,
    -- the import that loaded it (imports.id)
    import_id  bigint      not null references imports (id),
    loaded_at  timestamptz not null default now()
);

-- Databases seeded before this table existed: a finished import of a starter kind counts as
-- loaded (imports rows exist only for committed imports), so no kind is imported twice.
insert into starter_set (kind, import_id)
select distinct on (kind) kind, id
  from imports
 where kind in ('nb201', 'nb-macro', 'lemur', 'lemur-onnx') and finished_at is not null
 order by kind, id;
