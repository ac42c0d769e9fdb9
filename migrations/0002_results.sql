-- Benchmark results: one generic table for every benchmark (LEMUR, NAS-Bench-201, NAS-Bench-Macro,
-- NASLib zero-cost, NAS-Bench-Graph), filled by `archdb import`, queried by GET /v1/results.
-- Names that LEMUR's data() filters and sorts on use the "C" collation: byte order like SQLite's
-- BINARY (same sort order as LEMUR) and index-friendly prefix ranges for `nn_prefix`.

-- One row per `archdb import` run that committed. An import is one transaction, so a killed
-- import leaves no row here and no row anywhere else.
create table imports (
    id          bigint generated always as identity primary key,
    -- importer: lemur, lemur-onnx, nb201, nb-macro, naslib-zc, nas-bench-graph
    kind        text        not null,
    -- the directory given on the command line
    path        text        not null,
    started_at  timestamptz not null default now(),
    finished_at timestamptz,
    -- input records read, and rows this run added (0 on an idempotent re-run)
    rows_read   bigint      not null default 0,
    rows_added  bigint      not null default 0,
    -- per-table counts and notes of the importer
    details     jsonb       not null default '{}'
);

create table results (
    id              bigint generated always as identity primary key,
    -- benchmark / source the row comes from: lemur, nb201, nb-macro, naslib-zc, nas-bench-graph
    benchmark       text collate "C" not null,
    -- the row's stable key within its benchmark (LEMUR: the stat id); re-imports skip known keys
    source_key      text collate "C" not null,
    -- e.g. img-classification
    task            text collate "C" not null,
    -- e.g. cifar-10
    dataset         text collate "C" not null,
    -- what `value` measures: acc, iou, bleu, map, clip, ppl, a zero-cost proxy name, …
    metric          text collate "C" not null,
    -- the model / architecture name within its benchmark (LEMUR nn, NB201 arch string, …)
    nn              text collate "C" not null,
    -- epochs trained when measured (or the integer training budget); null when not applicable
    epoch           integer,
    -- the measured value (LEMUR `accuracy`, normalised to 0..1 there)
    value           double precision,
    -- training wall time in nanoseconds (LEMUR's unit)
    duration        bigint,
    -- train / valid / test where the benchmark distinguishes them; null for LEMUR
    split           text,
    -- training seed where the benchmark has several; null for LEMUR
    seed            integer,
    -- hyperparameter-set id (LEMUR prm_id = the trial uid)
    prm_id          text,
    -- hyperparameters exactly as the benchmark gives them (LEMUR prm, including `transform`)
    hyperparameters jsonb            not null default '{}',
    -- data transform name (LEMUR transform)
    transform       text collate "C",
    -- the computation graph of this model, where one is stored
    architecture_id bigint references architectures (id) on delete set null,
    -- the import that added the row (imports.id; no foreign key: checking it per row would
    -- double the time of a large COPY, and imports rows are never deleted)
    import_id       bigint           not null,
    unique (benchmark, source_key)
);
-- LEMUR's output order and the equality filters; also partitions only_best_accuracy.
create index results_order_idx on results (task, dataset, metric, nn, epoch, benchmark, id);
-- nn / nn_prefix filters, alone or with task, dataset, metric (most of LEMUR's queries).
create index results_nn_idx on results (nn, task, dataset, metric, epoch);
-- Best row per nn (unique_nn, top models) as an index-only scan.
create index results_nn_best_idx on results (nn, benchmark, value desc nulls last, epoch, id);
-- ON DELETE SET NULL from architectures, and the rows of one graph.
create index results_architecture_idx on results (architecture_id) where architecture_id is not null;

-- LEMUR code: models (nn), transforms and metrics by name, with LEMUR's code id. The shipped
-- LEMUR extract has the model source text; transforms and metrics come as hashes only.
create table lemur_code (
    kind    text collate "C" not null check (kind in ('nn', 'transform', 'metric')),
    name    text collate "C" not null,
    -- LEMUR id: md5 of the code with all whitespace removed (data() returns it as nn_id, …)
    code_id text    not null,
    -- sha256 of the exact UTF-8 text
    sha256  text    not null,
    -- length in characters
    length  integer not null,
    -- the source text; null where only the hash is shipped
    code    text,
    -- 128 MinHash values of the code's 7-token shingles (models only), for /v1/lemur/similar
    minhash integer[],
    import_id bigint  not null references imports (id),
    primary key (kind, name)
);

-- LEMUR on-device runs (run_data): the 2.1.2 layout stat/run/<task>_<nn>/<device>.json.
create table lemur_run (
    -- LEMUR's run id
    id               text collate "C" primary key,
    task             text,
    run_dir          text,
    model_name       text collate "C" not null,
    source_file      text,
    device_type      text collate "C",
    os_version       text,
    valid            boolean,
    emulator         boolean,
    error_message    text,
    -- as LEMUR records it (unit undocumented, probably ms)
    duration         bigint,
    total_ram_kb     bigint,
    free_ram_kb      bigint,
    available_ram_kb bigint,
    cached_kb        bigint,
    cpu_cores        integer,
    -- unix seconds
    "timestamp"      double precision,
    import_id        bigint not null references imports (id)
);
create index lemur_run_model_idx on lemur_run (model_name, id);

-- LEMUR architecture statistics (stat/nn/<nn>.json), one row per (nn, prm_id) as in LEMUR.
create table lemur_nn_stat (
    nn                       text collate "C" not null,
    prm_id                   text collate "C" not null,
    total_layers             bigint,
    leaf_layers              bigint,
    max_depth                bigint,
    total_params             bigint,
    trainable_params         bigint,
    frozen_params            bigint,
    flops                    bigint,
    model_size_mb            double precision,
    buffer_size_mb           double precision,
    total_memory_mb          double precision,
    dropout_count            bigint,
    has_attention            bigint,
    has_residual_connections bigint,
    is_resnet_like           bigint,
    is_vgg_like              bigint,
    is_inception_like        bigint,
    is_densenet_like         bigint,
    is_unet_like             bigint,
    is_transformer_like      bigint,
    is_mobilenet_like        bigint,
    is_efficientnet_like     bigint,
    code_length              bigint,
    num_classes_defined      bigint,
    num_functions_defined    bigint,
    uses_sequential          bigint,
    uses_modulelist          bigint,
    uses_moduledict          bigint,
    -- conv_info, linear_info, dropout_rates, layer_types, param_distribution
    meta                     jsonb,
    error                    text,
    import_id                bigint not null references imports (id),
    primary key (nn, prm_id)
);
