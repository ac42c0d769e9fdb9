-- Architectures: one row per distinct computation graph (deduplicated by canonical hash).
create table architectures (
    id          bigint generated always as identity primary key,
    graph_hash  text        not null unique,
    name        text,
    family      text,
    source      text,
    params      bigint      not null,
    macs        bigint      not null,
    num_nodes   integer     not null,
    num_edges   integer     not null,
    depth       integer     not null,
    input_shape bigint[]    not null,
    op_counts   jsonb       not null,
    -- ONNX metadata: opset, IR version, producer, unknown ops.
    onnx_meta   jsonb       not null default '{}',
    created_at  timestamptz not null default now()
);
create index architectures_family_idx on architectures (family, id);
create index architectures_params_idx on architectures (params, id);
create index architectures_macs_idx on architectures (macs, id);
create index architectures_op_counts_idx on architectures using gin (op_counts);

-- The computation graph, stored so that thousands load in one query: nodes as a JSON array in
-- topological order, edges as a flat int array [src0, dst0, src1, dst1, ...].
create table architecture_graphs (
    architecture_id bigint primary key references architectures (id) on delete cascade,
    nodes           jsonb     not null,
    edges           integer[] not null
);

-- The uploaded ONNX with weight payloads stripped (dims kept).
create table architecture_onnx (
    architecture_id bigint primary key references architectures (id) on delete cascade,
    onnx            bytea  not null,
    original_size   bigint not null
);

-- External names of an architecture (upload names, benchmark indices and encodings).
create table architecture_aliases (
    namespace       text   not null,
    value           text   not null,
    architecture_id bigint not null references architectures (id) on delete cascade,
    primary key (namespace, value)
);
create index architecture_aliases_arch_idx on architecture_aliases (architecture_id);
