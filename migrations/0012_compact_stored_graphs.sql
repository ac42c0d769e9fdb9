-- Compact storage of graphs and ONNX, so that storing a batch of models costs PostgreSQL little
-- (docs/benchmarks.md, bulk ingest): before, 1,000 NB201 uploads sent 61 MB of graph JSON that
-- the server parsed into `jsonb`, and 42 MB of ONNX that it compressed, all in one backend.
--
-- * `architecture_graphs.graph`: the graph encoded by archdb (`StoredGraph::encode`: a format
--   byte, postcard, lz4), ~20x smaller than the JSON. Rows written before keep `nodes`/`edges`
--   (JSON and an int array) and are read as they are; every row has one form or the other.
-- * `architecture_onnx.codec`: `lz4` for ONNX compressed by archdb on its CPU pool (new rows),
--   `plain` for the rows written before. Compressed bytes are stored as they are (`external`:
--   out of line, no second compression by the server).
alter table architecture_graphs
    add column graph bytea,
    alter column nodes drop not null,
    alter column edges drop not null,
    add constraint architecture_graphs_one_form
        check ((graph is not null) <> (nodes is not null and edges is not null));
alter table architecture_graphs alter column graph set storage external;

alter table architecture_onnx
    add column codec text not null default 'plain' check (codec in ('plain', 'lz4'));
alter table architecture_onnx alter column onnx set storage external;
