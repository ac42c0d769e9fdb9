-- Covering indexes for the calibration listings and analyses (`GET /v1/calibration`,
-- `GET /v1/calibration/analysis`). Every one of those queries reads `architecture_id`, which
-- `calibration_metrics_select_idx` did not contain: each was a bitmap heap scan touching one heap
-- page per architecture and dataset (42,000 of the 42,000 pages at 15,625 architectures × 3
-- datasets), 200–600 ms. With the columns in the index they are index-only scans (see the
-- "Calibration" section of docs/benchmarks.md).

drop index calibration_metrics_select_idx;

-- One figure across architectures: listing (ordered by value: the first `limit` entries are read
-- in order), kinds `datasets`, `temperature` and `best`.
create index calibration_metrics_series_idx
    on calibration_metrics (metric, stage, bins, dataset, value, architecture_id);

-- Every figure of one dataset and stage: kinds `bins` (one metric, all bin counts), `metrics` and
-- `accuracy` (all metrics at one bin count).
create index calibration_metrics_dataset_idx
    on calibration_metrics (dataset, stage, metric, bins) include (architecture_id, value);
