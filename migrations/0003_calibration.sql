-- Calibration statistics per architecture and dataset ("A Benchmark Study on Calibration",
-- ICLR 2024): computed from uploaded predictions or stored as given figures.

-- One row per (architecture, dataset): the run's context.
create table calibration_runs (
    architecture_id bigint           not null references architectures (id) on delete cascade,
    dataset         text collate "C" not null,
    -- top-1 accuracy of the predictions (0..1)
    accuracy        double precision,
    -- fitted temperature, when temperature scaling was done
    temperature     double precision,
    -- number of predictions the figures were computed from (null for given figures)
    n_samples       integer,
    -- computed | given | import:<file name>
    source          text             not null,
    -- the computation's settings (bin rule, Brier scaling, split) when computed
    settings        jsonb            not null default '{}',
    -- reliability-diagram bins when computed
    reliability     jsonb,
    updated_at      timestamptz      not null default now(),
    primary key (architecture_id, dataset)
);

-- One row per figure: metric at a bin count (0 for bin-free metrics), before or after
-- temperature scaling. Long format so that any metric/bins/stage filters and correlates.
create table calibration_metrics (
    architecture_id bigint           not null,
    dataset         text collate "C" not null,
    -- pre | post (temperature scaling)
    stage           text             not null check (stage in ('pre', 'post')),
    -- ece, ece_em, cwce, cwce_em, mce, rmsce, ksce, kdece, mmce, nll, brier, accuracy
    metric          text collate "C" not null,
    bins            integer          not null default 0,
    value           double precision not null,
    primary key (architecture_id, dataset, stage, metric, bins),
    foreign key (architecture_id, dataset) references calibration_runs (architecture_id, dataset) on delete cascade
);
create index calibration_metrics_select_idx on calibration_metrics (metric, bins, stage, dataset) include (value);
