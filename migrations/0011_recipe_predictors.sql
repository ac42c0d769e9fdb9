-- Recipe predictors (gradient-boosted trees conditioned on dataset and training recipe,
-- src/predict/recipe) live in the registry beside the graph predictors: trained as queued
-- `train-recipe` jobs from the LEMUR trial rows and graphs the database holds, activated like
-- any predictor. `kind` tells serving processes how to load the artifact.
alter table predictors add column kind text not null default 'graph'
    check (kind in ('graph', 'recipe'));

alter table jobs drop constraint jobs_kind_check;
alter table jobs add constraint jobs_kind_check
    check (kind in ('train', 'finetune', 'train-recipe'));
