-- only_best_accuracy without reading the result rows: the best value of each (task, dataset,
-- metric, nn, epoch, benchmark) group is computed over an index-only scan, and only the rows
-- that are best are read from the table (src/db/results.rs, push_rows).
--
-- Both indexes keep their key columns (every plan that used them still can) and carry `value`;
-- the nn-first one also ends in `benchmark, id`, so with `nn` given its order is exactly LEMUR's
-- output order (task, dataset, metric, nn, epoch, benchmark, id) and no sort is needed.
drop index results_order_idx;
create index results_order_idx on results (task, dataset, metric, nn, epoch, benchmark, id)
    include (value);
drop index results_nn_idx;
create index results_nn_idx on results (nn, task, dataset, metric, epoch, benchmark, id)
    include (value);

-- Stored graphs and ONNX are compressed with lz4 instead of pglz: pglz was a third of the
-- server's time when the starter set is loaded (10,351 NB201 graphs, ~170 MB), lz4 is several
-- times faster at a slightly lower ratio. Values already stored keep their compression; reads
-- are unchanged. A server built without lz4 keeps pglz.
do $$
begin
    alter table architecture_graphs alter column nodes set compression lz4;
    alter table architecture_onnx alter column onnx set compression lz4;
exception when others then
    raise notice 'lz4 compression not available (%): stored graphs stay pglz-compressed', sqlerrm;
end $$;
