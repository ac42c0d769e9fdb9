-- Accuracy predictors and the training-job queue (docs/predictor.md).

-- One row per trained predictor: the artifact (safetensors with the model config in its
-- header) and what it predicts. At most one predictor is active per target; serving processes
-- load the active ones and reload on NOTIFY archdb_predictors.
create table predictors (
    id             bigint generated always as identity primary key,
    name           text        not null,
    -- the benchmark figure it predicts, as stored in results (e.g. nb201 / cifar10 / test_acc)
    target         jsonb       not null,
    artifact       bytea       not null,
    -- the model config of the artifact (sizes, vocabulary, target transform), for listing
    config         jsonb       not null,
    -- held-out evaluation: kendall_tau_b, spearman, mae, split, seed, train/test sizes,
    -- device, train_seconds
    evaluation     jsonb       not null default '{}',
    active         boolean     not null default false,
    -- the predictor a fine-tune started from
    parent_id      bigint      references predictors (id) on delete set null,
    job_id         bigint,
    created_at     timestamptz not null default now()
);
create unique index predictors_one_active_per_target on predictors ((target)) where active;

-- What a predictor says about the architectures whose accuracy was measured for its target,
-- computed once when it is registered: nearest-neighbour search, cached predictions.
create table predictor_index (
    predictor_id       bigint           not null references predictors (id) on delete cascade,
    architecture_id    bigint           not null references architectures (id) on delete cascade,
    measured           double precision not null,
    accuracy           double precision not null,
    std                double precision not null,
    ood_score          double precision not null,
    membership_entropy double precision not null,
    embedding          real[]           not null,
    primary key (predictor_id, architecture_id)
);

-- Training and fine-tuning jobs, claimed by `archdb worker` with FOR UPDATE SKIP LOCKED. A
-- running job holds a lease that its worker's heartbeat extends; a job whose lease ran out is
-- claimable again (until max_attempts), so a killed worker's job is re-run by another.
create table jobs (
    id             bigint generated always as identity primary key,
    kind           text        not null check (kind in ('train', 'finetune')),
    params         jsonb       not null,
    state          text        not null default 'queued'
                   check (state in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts       integer     not null default 0,
    max_attempts   integer     not null default 3,
    cancel_requested boolean   not null default false,
    worker         text,
    lease_until    timestamptz,
    -- latest progress report: stage, member, epoch, loss, validation_kendall
    progress       jsonb,
    error          text,
    predictor_id   bigint      references predictors (id) on delete set null,
    created_at     timestamptz not null default now(),
    started_at     timestamptz,
    heartbeat_at   timestamptz,
    finished_at    timestamptz
);
create index jobs_claimable on jobs (id) where state in ('queued', 'running');
