//! Benchmark-result queries: LEMUR `data()` / `data_withnonnullvalue()` parity over `results`,
//! JoinConf-style top models, pairs and MinHash-similar models, and LEMUR runs. Each query is
//! built as SQL plus the list of [`Column`]s it yields, so the HTTP layer can stream any of them
//! as JSON, JSON lines or CSV.

use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::lemur::{BENCHMARK as LEMUR, NN_STAT_FLOATS, NN_STAT_INTS};

/// How a column is decoded from the row and written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Float,
    Bool,
    /// JSON text, written as is.
    Json,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// A query ready to stream: the SQL with its binds and the columns each row has, in order.
pub struct RowQuery {
    pub sql: QueryBuilder<Postgres>,
    pub columns: Vec<Column>,
}

/// Which rows (LEMUR's equality filters and prefixes, plus data_withnonnullvalue's requirements).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub benchmark: Vec<String>,
    pub task: Vec<String>,
    pub dataset: Vec<String>,
    pub metric: Vec<String>,
    pub nn: Vec<String>,
    pub epoch: Vec<i32>,
    /// Exact, case-sensitive name prefixes (any of them).
    pub nn_prefix: Vec<String>,
    /// `results` columns that must not be null (see [`require_column`]).
    pub require: Vec<&'static str>,
    /// Hyperparameters that must be present and not null.
    pub require_prm: Vec<String>,
}

/// LEMUR's row selection, applied in LEMUR's order: filters, `unique_nn`, `only_best_accuracy`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection {
    /// One row per model: its best accuracy (ties: lower epoch, then import order).
    pub unique_nn: bool,
    /// Rows whose accuracy is the maximum of their (task, dataset, metric, nn, epoch); ties kept.
    pub only_best: bool,
}

/// Optional columns.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// nn/metric/transform code and LEMUR code ids.
    pub code: bool,
    /// LEMUR architecture statistics (`nn_*` columns).
    pub nn_stats: bool,
    /// `false`: `prm` is `{}` (data_withnonnullvalue `include_prm=False`).
    pub prm: bool,
    /// Flatten the hyperparameters into columns.
    pub prm_as_columns: bool,
    /// LEMUR nn_stat columns that must be non-null; joins on (nn, prm_id) and returns only
    /// these `nn_*` columns unless `nn_stats` is set.
    pub require_nn_stat: Vec<&'static str>,
}

/// The `results` column behind a LEMUR field name of `require_stat_nonnull` (plus the generic
/// columns), or `None` for an unknown name.
/// The fields `require` names (the argument of [`require_column`]).
pub const REQUIRE_FIELDS: [&str; 14] = [
    "id",
    "task",
    "dataset",
    "metric",
    "nn",
    "epoch",
    "accuracy",
    "duration",
    "transform",
    "prm",
    "prm_id",
    "split",
    "seed",
    "architecture_id",
];

pub fn require_column(field: &str) -> Option<&'static str> {
    Some(match field {
        "id" => "source_key",
        "task" => "task",
        "dataset" => "dataset",
        "metric" => "metric",
        "nn" => "nn",
        "epoch" => "epoch",
        "accuracy" => "value",
        "duration" => "duration",
        "transform" => "transform",
        "prm" | "prm_id" => "prm_id",
        "split" => "split",
        "seed" => "seed",
        "architecture_id" => "architecture_id",
        _ => return None,
    })
}

/// LEMUR's output names of the nn_stat columns (`data(include_nn_stats=True)`), in its order.
const NN_STAT_NAMES: [(&str, &str); 29] = [
    ("nn_total_params", "total_params"),
    ("nn_trainable_params", "trainable_params"),
    ("nn_frozen_params", "frozen_params"),
    ("nn_total_layers", "total_layers"),
    ("nn_leaf_layers", "leaf_layers"),
    ("nn_max_depth", "max_depth"),
    ("nn_flops", "flops"),
    ("nn_model_size_mb", "model_size_mb"),
    ("nn_buffer_size_mb", "buffer_size_mb"),
    ("nn_total_memory_mb", "total_memory_mb"),
    ("nn_dropout_count", "dropout_count"),
    ("nn_has_attention", "has_attention"),
    ("nn_has_residual", "has_residual_connections"),
    ("nn_is_resnet_like", "is_resnet_like"),
    ("nn_is_vgg_like", "is_vgg_like"),
    ("nn_is_inception_like", "is_inception_like"),
    ("nn_is_densenet_like", "is_densenet_like"),
    ("nn_is_unet_like", "is_unet_like"),
    ("nn_is_transformer_like", "is_transformer_like"),
    ("nn_is_mobilenet_like", "is_mobilenet_like"),
    ("nn_is_efficientnet_like", "is_efficientnet_like"),
    ("nn_code_length", "code_length"),
    ("nn_num_classes", "num_classes_defined"),
    ("nn_num_functions", "num_functions_defined"),
    ("nn_uses_sequential", "uses_sequential"),
    ("nn_uses_modulelist", "uses_modulelist"),
    ("nn_uses_moduledict", "uses_moduledict"),
    ("nn_stats_meta", "meta"),
    ("nn_stats_error", "error"),
];

/// The `lemur_nn_stat` column for an `nn_*` alias or a raw column name.
/// Every name [`nn_stat_column`] takes: the aliases, then the raw columns.
pub fn nn_stat_names() -> impl Iterator<Item = &'static str> {
    let aliases = NN_STAT_NAMES.iter().map(|(alias, _)| *alias);
    aliases.chain(NN_STAT_NAMES.iter().map(|(_, col)| *col))
}

pub fn nn_stat_column(name: &str) -> Option<&'static str> {
    NN_STAT_NAMES
        .iter()
        .find(|(alias, col)| *alias == name || *col == name)
        .map(|(_, col)| *col)
}

fn nn_stat_kind(col: &str) -> Kind {
    match col {
        "meta" => Kind::Json,
        "error" => Kind::Text,
        c if NN_STAT_FLOATS.contains(&c) => Kind::Float,
        c if NN_STAT_INTS.contains(&c) => Kind::Int,
        _ => Kind::Text,
    }
}

/// Order of LEMUR's `data()`: `task, dataset, metric, nn, epoch`; then benchmark and import
/// order (LEMUR has no tiebreak; import order is its file order, best trial first).
const LEMUR_ORDER: &str = "task, dataset, metric, nn, epoch, benchmark, id";

fn lemur_order(alias: &str) -> String {
    LEMUR_ORDER
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The smallest string above every string that starts with `prefix` (byte order, "C"
/// collation), or `None` when there is none.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Appends ` and …` conditions of `f` on the `results` row `alias`.
fn push_filter(q: &mut QueryBuilder<Postgres>, alias: &str, f: &Filter) {
    // One value is written as `=`: the planner then knows the column is constant (better
    // estimates, index order usable for LEMUR's sort and the only_best_accuracy window).
    for (col, values) in [
        ("benchmark", &f.benchmark),
        ("task", &f.task),
        ("dataset", &f.dataset),
        ("metric", &f.metric),
        ("nn", &f.nn),
    ] {
        match values.as_slice() {
            [] => {}
            [one] => {
                q.push(format!(" and {alias}.{col} = "))
                    .push_bind(one.clone());
            }
            many => {
                q.push(format!(" and {alias}.{col} = any("))
                    .push_bind(many.to_vec())
                    .push(")");
            }
        }
    }
    match f.epoch.as_slice() {
        [] => {}
        [one] => {
            q.push(format!(" and {alias}.epoch = ")).push_bind(*one);
        }
        many => {
            q.push(format!(" and {alias}.epoch = any("))
                .push_bind(many.to_vec())
                .push(")");
        }
    }
    let prefixes: Vec<&String> = f.nn_prefix.iter().filter(|p| !p.is_empty()).collect();
    // An empty prefix matches every name, so it makes the whole condition true.
    if !prefixes.is_empty() && prefixes.len() == f.nn_prefix.len() {
        q.push(" and (");
        for (i, p) in prefixes.into_iter().enumerate() {
            if i > 0 {
                q.push(" or ");
            }
            q.push(format!("({alias}.nn >= ")).push_bind(p.clone());
            if let Some(upper) = prefix_upper_bound(p) {
                q.push(format!(" and {alias}.nn < ")).push_bind(upper);
            }
            q.push(")");
        }
        q.push(")");
    }
    for col in &f.require {
        q.push(format!(" and {alias}.{col} is not null"));
    }
    for key in &f.require_prm {
        q.push(format!(" and jsonb_typeof({alias}.hyperparameters -> "))
            .push_bind(key.clone())
            .push(") <> 'null'");
    }
}

/// Appends `(…) r`: the `results` rows selected by `f` and `s`.
fn push_rows(q: &mut QueryBuilder<Postgres>, f: &Filter, s: Selection) {
    if !s.only_best {
        q.push("(select b.* from results b where true");
        push_filter(q, "b", f);
        if s.unique_nn {
            q.push(" and b.id in ");
            push_best_ids(q, f);
        }
        q.push(") r");
        return;
    }
    // only_best_accuracy: the rows whose value is the maximum of their (task, dataset, metric,
    // nn, epoch, benchmark) group, ties kept. The maxima are computed over (group, id, value)
    // alone, an index-only scan of `results_nn_idx` (nn given) or `results_order_idx` whose
    // order is the partition order (no sort), and only the best rows are read from the table.
    // The partition columns are listed in that index's order; the groups are the same. The key
    // columns are passed on from the scan so that the planner sees the rows in LEMUR's order
    // (`max_rows` stops early instead of sorting every best row).
    let keys = if f.nn.is_empty() {
        "k.task, k.dataset, k.metric, k.nn, k.epoch, k.benchmark"
    } else {
        "k.nn, k.task, k.dataset, k.metric, k.epoch, k.benchmark"
    };
    q.push(format!(
        "(select w.id, w.benchmark, b.source_key, w.task, w.dataset, w.metric, w.nn, w.epoch, \
         b.value, b.duration, b.split, b.seed, b.prm_id, b.hyperparameters, b.transform, \
         b.architecture_id, b.import_id from (select k.id, k.task, k.dataset, k.metric, k.nn, \
         k.epoch, k.benchmark, k.value, max(k.value) over (partition by {keys}) as best_value \
         from results k where true"
    ));
    push_filter(q, "k", f);
    if s.unique_nn {
        q.push(" and k.id in ");
        push_best_ids(q, f);
    }
    q.push(") w join results b on b.id = w.id where w.value = w.best_value) r");
}

/// Appends `(…) r`: the best row of each model among the rows of `f`, as JoinConf's candidates
/// are chosen.
fn push_best_per_nn(q: &mut QueryBuilder<Postgres>, f: &Filter) {
    q.push("(select b.* from results b where b.id in ");
    push_best_ids(q, f);
    q.push(") r");
}

/// Appends `(select id …)`: the best row of each (nn, benchmark) among the rows of `f`: highest
/// value, then lower epoch, then import order (`results_nn_best_idx` order).
fn push_best_ids(q: &mut QueryBuilder<Postgres>, f: &Filter) {
    const ORDER: &str = " order by u.nn, u.benchmark, u.value desc nulls last, u.epoch, u.id";
    let only_benchmark = Filter {
        benchmark: f.benchmark.clone(),
        ..Filter::default()
    };
    if *f == only_benchmark {
        // Unfiltered: skip from model to model through the index (a loose index scan), one
        // probe per model instead of reading every row.
        q.push(
            "(with recursive best as ((select u.nn, u.benchmark, u.id from results u where true",
        );
        push_filter(q, "u", f);
        q.push(ORDER).push(" limit 1) union all select x.* from best, lateral (select u.nn, \
             u.benchmark, u.id from results u where (u.nn, u.benchmark) > (best.nn, best.benchmark)");
        push_filter(q, "u", f);
        q.push(ORDER).push(" limit 1) x) select id from best)");
    } else {
        q.push("(select distinct on (u.nn, u.benchmark) u.id from results u where true");
        push_filter(q, "u", f);
        q.push(ORDER).push(")");
    }
}

/// Writes a select list and records its columns.
struct Columns<'q> {
    q: &'q mut QueryBuilder<Postgres>,
    columns: Vec<Column>,
}

impl Columns<'_> {
    fn add(&mut self, sql: &str, name: impl Into<String>, kind: Kind) -> &mut Self {
        if !self.columns.is_empty() {
            self.q.push(", ");
        }
        self.q.push(sql);
        self.columns.push(Column {
            name: name.into(),
            kind,
        });
        self
    }

    /// The LEMUR columns of the `results` row `a`, names suffixed with `sfx` (pairs).
    fn result(&mut self, a: &str, sfx: &str, out: &Output, prm_keys: &[String]) {
        let n = |name: &str| format!("{name}{sfx}");
        self.add(&format!("{a}.source_key"), n("id"), Kind::Text);
        self.add(&format!("{a}.benchmark"), n("benchmark"), Kind::Text);
        for col in ["task", "dataset", "metric", "nn"] {
            self.add(&format!("{a}.{col}"), n(col), Kind::Text);
        }
        self.add(&format!("{a}.epoch::int8"), n("epoch"), Kind::Int);
        self.add(&format!("{a}.value"), n("accuracy"), Kind::Float);
        self.add(&format!("{a}.duration"), n("duration"), Kind::Int);
        self.add(&format!("{a}.split"), n("split"), Kind::Text);
        self.add(&format!("{a}.seed::int8"), n("seed"), Kind::Int);
        self.add(&format!("{a}.prm_id"), n("prm_id"), Kind::Text);
        let prm = if out.prm {
            format!("{a}.hyperparameters::text")
        } else {
            "'{}'".to_string()
        };
        self.add(&prm, n("prm"), Kind::Json);
        self.add(&format!("{a}.transform"), n("transform"), Kind::Text);
        self.add(
            &format!("{a}.architecture_id"),
            n("architecture_id"),
            Kind::Int,
        );
        if out.code {
            for kind in ["nn", "metric", "transform"] {
                self.add(
                    &format!("{a}_{kind}.code"),
                    n(&format!("{kind}_code")),
                    Kind::Text,
                );
                self.add(
                    &format!("{a}_{kind}.code_id"),
                    n(&format!("{kind}_id")),
                    Kind::Text,
                );
            }
        }
        if sfx.is_empty() {
            let stats: Vec<&str> = if out.nn_stats {
                NN_STAT_NAMES.iter().map(|(_, c)| *c).collect()
            } else {
                out.require_nn_stat.clone()
            };
            for col in stats {
                let alias = NN_STAT_NAMES
                    .iter()
                    .find(|(_, c)| *c == col)
                    .map_or(col, |(a, _)| *a);
                let kind = nn_stat_kind(col);
                let sql = if kind == Kind::Json {
                    format!("{a}_ns.{col}::text")
                } else {
                    format!("{a}_ns.{col}")
                };
                self.add(&sql, alias, kind);
            }
            let taken: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
            for key in prm_keys {
                // A key that would shadow a column (`transform`, `epoch`) keeps a `prm_` prefix.
                let name = if taken.contains(key) {
                    format!("prm_{key}")
                } else {
                    key.clone()
                };
                if !self.columns.is_empty() {
                    self.q.push(", ");
                }
                self.q
                    .push(format!("({a}.hyperparameters -> "))
                    .push_bind(key.clone())
                    .push(")::text");
                self.columns.push(Column {
                    name,
                    kind: Kind::Json,
                });
            }
        }
    }
}

/// Joins of the code and nn-stat columns of the `results` row `a`.
fn push_joins(q: &mut QueryBuilder<Postgres>, a: &str, out: &Output, partner: bool) {
    if out.code {
        for (kind, col) in [
            ("nn", "nn"),
            ("metric", "metric"),
            ("transform", "transform"),
        ] {
            q.push(format!(
                " left join lemur_code {a}_{kind} on {a}_{kind}.kind = '{kind}' \
                 and {a}_{kind}.name = {a}.{col} and {a}.benchmark = '{LEMUR}'"
            ));
        }
    }
    if partner {
        return;
    }
    if !out.require_nn_stat.is_empty() {
        // data_withnonnullvalue: the statistics of this very (nn, prm_id).
        q.push(format!(
            " join lemur_nn_stat {a}_ns on {a}_ns.nn = {a}.nn and {a}_ns.prm_id = {a}.prm_id \
             and {a}.benchmark = '{LEMUR}'"
        ));
        for col in &out.require_nn_stat {
            q.push(format!(" and {a}_ns.{col} is not null"));
        }
    } else if out.nn_stats {
        // One statistics row per model (the latest imported): LEMUR joins on nn alone and
        // repeats a result row for every statistics row of its model.
        q.push(format!(
            " left join (select distinct on (nn) * from lemur_nn_stat order by nn, import_id desc, \
             prm_id) {a}_ns on {a}_ns.nn = {a}.nn and {a}.benchmark = '{LEMUR}'"
        ));
    }
}

/// The hyperparameter names of the rows `data()` would return, for `prm_as_columns`.
pub async fn prm_keys(
    pool: &PgPool,
    f: &Filter,
    s: Selection,
    max_rows: Option<i64>,
) -> sqlx::Result<Vec<String>> {
    let mut q = QueryBuilder::new("select distinct k from (select r.hyperparameters from ");
    push_rows(&mut q, f, s);
    q.push(format!(" order by {}", lemur_order("r")));
    if let Some(n) = max_rows {
        q.push(" limit ").push_bind(n);
    }
    q.push(") r, jsonb_object_keys(r.hyperparameters) k order by k");
    q.build_query_scalar().fetch_all(pool).await
}

/// LEMUR `data()` / `data_withnonnullvalue()`.
pub fn data(
    f: &Filter,
    s: Selection,
    out: &Output,
    prm_keys: &[String],
    max_rows: Option<i64>,
) -> RowQuery {
    let mut q = QueryBuilder::new("select ");
    let mut cols = Columns {
        q: &mut q,
        columns: Vec::new(),
    };
    cols.result("r", "", out, prm_keys);
    let columns = cols.columns;
    q.push(" from ");
    push_rows(&mut q, f, s);
    push_joins(&mut q, "r", out, false);
    q.push(format!(" order by {}", lemur_order("r")));
    if let Some(n) = max_rows {
        q.push(" limit ").push_bind(n);
    }
    RowQuery { sql: q, columns }
}

/// JoinConf Var-N: the best row of each model, best models first, `n` of them.
pub fn top_models(f: &Filter, out: &Output, n: i64) -> RowQuery {
    let mut q = QueryBuilder::new("select ");
    let mut cols = Columns {
        q: &mut q,
        columns: Vec::new(),
    };
    cols.result("r", "", out, &[]);
    let columns = cols.columns;
    q.push(" from ");
    push_best_per_nn(&mut q, f);
    push_joins(&mut q, "r", out, false);
    q.push(" order by r.value desc nulls last, r.epoch, r.nn, r.id limit ")
        .push_bind(n);
    RowQuery { sql: q, columns }
}

/// What a partner row of JoinConf's pairwise mode must share or differ in.
#[derive(Debug, Clone, Default)]
pub struct PairSpec {
    /// Columns (task, dataset, metric, nn, epoch) equal to the row's.
    pub same: Vec<&'static str>,
    /// Columns different from the row's.
    pub diff: Vec<&'static str>,
    /// The partner's accuracy is higher (`enhance_nn`).
    pub better: bool,
    /// Leave out rows without a partner (LEMUR keeps them with null partner columns).
    pub require_partner: bool,
    /// Makes the random choice of partner repeatable.
    pub seed: Option<String>,
}

/// JoinConf pairwise: the first `max_rows` rows (LEMUR order) each with one random partner
/// among the selected rows that shares `same`, differs in `diff` and, with `better`, is better.
pub fn pairs(f: &Filter, s: Selection, out: &Output, p: &PairSpec, max_rows: i64) -> RowQuery {
    let mut q = QueryBuilder::new("with w as materialized (select r.* from ");
    push_rows(&mut q, f, s);
    q.push(format!(
        "), d1 as (select * from w r order by {} limit ",
        lemur_order("r")
    ))
    .push_bind(max_rows);
    q.push("), p as (select distinct on (d1.id) d1.id as pair_of, d2.* from d1 join w d2 on true");
    for col in &p.same {
        q.push(format!(" and d2.{col} is not distinct from d1.{col}"));
    }
    for col in &p.diff {
        q.push(format!(" and d2.{col} is distinct from d1.{col}"));
    }
    if p.better {
        q.push(" and d2.value > d1.value");
    }
    q.push(" order by d1.id, ");
    match &p.seed {
        Some(seed) => {
            q.push("md5(d2.source_key || ")
                .push_bind(seed.clone())
                .push(")");
        }
        None => {
            q.push("random()");
        }
    }
    q.push(") select ");
    let mut cols = Columns {
        q: &mut q,
        columns: Vec::new(),
    };
    let own = Output {
        nn_stats: false,
        require_nn_stat: Vec::new(),
        ..out.clone()
    };
    cols.result("r", "", &own, &[]);
    cols.result("p", "_2", &own, &[]);
    let columns = cols.columns;
    q.push(" from d1 r");
    q.push(if p.require_partner {
        " join p on p.pair_of = r.id"
    } else {
        " left join p on p.pair_of = r.id"
    });
    push_joins(&mut q, "r", &own, true);
    push_joins(&mut q, "p", &own, true);
    q.push(format!(" order by {}", lemur_order("r")));
    RowQuery { sql: q, columns }
}

/// A LEMUR model's best row (within a filter) and the MinHash of its code.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub id: i64,
    pub nn: String,
    pub accuracy: Option<f64>,
    pub minhash: Vec<i32>,
}

/// JoinConf anchor-band candidates: the best LEMUR row of each model with a code MinHash.
pub async fn similarity_candidates(pool: &PgPool, f: &Filter) -> sqlx::Result<Vec<Candidate>> {
    let mut q = QueryBuilder::new("select r.id, r.nn, r.value as accuracy, c.minhash from ");
    let lemur_only = Filter {
        benchmark: vec![LEMUR.to_string()],
        ..f.clone()
    };
    push_best_per_nn(&mut q, &lemur_only);
    q.push(" join lemur_code c on c.kind = 'nn' and c.name = r.nn and c.minhash is not null");
    q.push(" order by r.value desc nulls last, r.epoch, r.nn");
    q.build_query_as().fetch_all(pool).await
}

/// The rows `ids` with their Jaccard similarity to `anchor`, ordered as LEMUR orders them
/// (accuracy, similarity, nn, epoch).
pub fn similar_rows(out: &Output, anchor: &str, ids: Vec<i64>, jaccard: Vec<f64>) -> RowQuery {
    let mut q = QueryBuilder::new("select ");
    let mut cols = Columns {
        q: &mut q,
        columns: Vec::new(),
    };
    cols.result("r", "", out, &[]);
    cols.add("s.j", "anchor_jaccard", Kind::Float);
    cols.q.push(", ").push_bind(anchor.to_string());
    cols.columns.push(Column {
        name: "anchor_nn".into(),
        kind: Kind::Text,
    });
    let columns = cols.columns;
    q.push(" from unnest(")
        .push_bind(ids)
        .push(", ")
        .push_bind(jaccard)
        .push(") s(id, j) join results r on r.id = s.id");
    push_joins(&mut q, "r", out, false);
    q.push(" order by r.value desc nulls last, s.j desc, r.nn, r.epoch");
    RowQuery { sql: q, columns }
}

/// LEMUR `run_data`: on-device runs by model and device.
pub fn runs(model_name: &[String], device_type: &[String], max_rows: Option<i64>) -> RowQuery {
    const COLS: [(&str, Kind); 17] = [
        ("id", Kind::Text),
        ("task", Kind::Text),
        ("run_dir", Kind::Text),
        ("model_name", Kind::Text),
        ("source_file", Kind::Text),
        ("device_type", Kind::Text),
        ("os_version", Kind::Text),
        ("valid", Kind::Bool),
        ("emulator", Kind::Bool),
        ("error_message", Kind::Text),
        ("duration", Kind::Int),
        ("total_ram_kb", Kind::Int),
        ("free_ram_kb", Kind::Int),
        ("available_ram_kb", Kind::Int),
        ("cached_kb", Kind::Int),
        ("cpu_cores", Kind::Int),
        ("timestamp", Kind::Float),
    ];
    let mut q = QueryBuilder::new("select ");
    let list: Vec<String> = COLS
        .iter()
        .map(|(c, k)| match k {
            Kind::Int => format!("\"{c}\"::int8"),
            _ => format!("\"{c}\""),
        })
        .collect();
    q.push(list.join(", "));
    q.push(" from lemur_run where true");
    for (col, values) in [("model_name", model_name), ("device_type", device_type)] {
        if !values.is_empty() {
            q.push(format!(" and {col} = any("))
                .push_bind(values.to_vec())
                .push(")");
        }
    }
    q.push(" order by model_name, id");
    if let Some(n) = max_rows {
        q.push(" limit ").push_bind(n);
    }
    let columns = COLS
        .iter()
        .map(|(c, k)| Column {
            name: c.to_string(),
            kind: *k,
        })
        .collect();
    RowQuery { sql: q, columns }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_cover_exactly_the_prefixed_names() {
        assert_eq!(prefix_upper_bound("ga-").as_deref(), Some("ga."));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }

    #[test]
    fn listed_names_are_the_accepted_ones() {
        assert!(REQUIRE_FIELDS.iter().all(|f| require_column(f).is_some()));
        assert_eq!(require_column("colour"), None);
        let names: Vec<&str> = nn_stat_names().collect();
        assert_eq!(names.len(), 2 * NN_STAT_NAMES.len());
        assert!(names.iter().all(|n| nn_stat_column(n).is_some()));
        assert!(names.contains(&"nn_flops") && names.contains(&"flops"));
    }
}
