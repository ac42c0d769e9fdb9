//! LEMUR's vocabulary, shared by its importer (`import::lemur`), the queries over its tables
//! (`db::results`) and its exporters: the benchmark name and the columns of its architecture
//! statistics.

/// `results.benchmark` of LEMUR rows; also the alias namespace and family of its graphs.
pub const BENCHMARK: &str = "lemur";

/// The dataset of a graph whose stem carries no `_<dataset>` suffix.
pub const DEFAULT_GRAPH_DATASET: &str = "cifar-10";

/// A LEMUR graph's stem, as the ONNX extract names its files and `import lemur-onnx` its alias:
/// `<nn>` on CIFAR-10, `<nn>_<dataset>` otherwise.
pub fn graph_stem(nn: &str, dataset: &str) -> String {
    if dataset == DEFAULT_GRAPH_DATASET {
        nn.to_string()
    } else {
        format!("{nn}_{dataset}")
    }
}

/// Integer columns of `stat/nn/<nn>.json` (and of `lemur_nn_stat`).
pub const NN_STAT_INTS: [&str; 24] = [
    "total_layers",
    "leaf_layers",
    "max_depth",
    "total_params",
    "trainable_params",
    "frozen_params",
    "flops",
    "dropout_count",
    "has_attention",
    "has_residual_connections",
    "is_resnet_like",
    "is_vgg_like",
    "is_inception_like",
    "is_densenet_like",
    "is_unet_like",
    "is_transformer_like",
    "is_mobilenet_like",
    "is_efficientnet_like",
    "code_length",
    "num_classes_defined",
    "num_functions_defined",
    "uses_sequential",
    "uses_modulelist",
    "uses_moduledict",
];

/// Floating-point columns of `stat/nn/<nn>.json`.
pub const NN_STAT_FLOATS: [&str; 3] = ["model_size_mb", "buffer_size_mb", "total_memory_mb"];
