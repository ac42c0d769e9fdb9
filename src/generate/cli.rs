//! The options and outputs of `archdb generate nb101|nb301|tnb101|naslib-zc`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::{
    DartsGenotype, Nb101Spec, Nb301Variant, TransNasArch, TransNasTask, nb101_model, nb301_model,
    transnas_model, write_model,
};

/// Which cell `archdb generate` writes for the single-architecture spaces, or which samples file.
#[derive(Debug, Clone, clap::Args)]
pub struct CellArgs {
    /// nb101: the cell as `{"matrix": [[0, 1, …], …], "ops": ["input", …, "output"]}`.
    #[arg(long)]
    pub spec: Option<String>,
    /// nb301: the DARTS genotype as `{"normal": [["sep_conv_3x3", 0], …], "normal_concat":
    /// [2, 3, 4, 5], "reduce": […], "reduce_concat": […]}`.
    #[arg(long)]
    pub genotype: Option<String>,
    /// nb301: DARTS `NetworkCIFAR` (trained by NAS-Bench-301) or NASLib's build (zero-cost).
    #[arg(long, value_enum, default_value_t = Nb301Variant::Darts)]
    pub variant: Nb301Variant,
    /// tnb101: the architecture string (`64-41414-3_13_233` micro, `64-1242-basic` macro).
    #[arg(long)]
    pub arch: Option<String>,
    /// tnb101: the task, which sets the head.
    #[arg(long, value_enum, default_value_t = TransNasTask::ClassScene)]
    pub task: TransNasTask,
    /// naslib-zc: a NAS-Bench-Suite-Zero samples file (`nas_bench_suite_zero_samples.jsonl.gz`).
    #[arg(long)]
    pub samples: Option<PathBuf>,
}

impl CellArgs {
    /// `nb101.onnx` from `--spec`.
    pub fn nb101(&self, out: &Path) -> Result<usize> {
        let Some(spec) = &self.spec else {
            bail!("generate nb101 needs --spec '{{\"matrix\": …, \"ops\": …}}'")
        };
        let model = nb101_model(&Nb101Spec::from_json(spec)?);
        write_model(&model, out.join("nb101.onnx"))?;
        Ok(1)
    }

    /// `nb301-<variant>.onnx` from `--genotype`.
    pub fn nb301(&self, out: &Path) -> Result<usize> {
        let Some(genotype) = &self.genotype else {
            bail!("generate nb301 needs --genotype '{{\"normal\": …, \"reduce\": …}}'")
        };
        let model = nb301_model(&DartsGenotype::from_json(genotype)?, self.variant);
        let variant = match self.variant {
            Nb301Variant::Darts => "darts",
            Nb301Variant::Naslib => "naslib",
        };
        write_model(&model, out.join(format!("nb301-{variant}.onnx")))?;
        Ok(1)
    }

    /// `tnb101-<arch>-<task>.onnx` from `--arch` and `--task`.
    pub fn tnb101(&self, out: &Path) -> Result<usize> {
        let Some(arch) = &self.arch else {
            bail!("generate tnb101 needs --arch (e.g. 64-41414-3_13_233 or 64-1242-basic)")
        };
        let model = transnas_model(&TransNasArch::parse(arch)?, self.task);
        let file = format!("tnb101-{arch}-{}.onnx", self.task.name());
        write_model(&model, out.join(file))?;
        Ok(1)
    }

    /// `<space>-<task>-<line>.onnx` for every generated sample of `--samples` (line numbers from
    /// 1).
    pub fn naslib_samples(&self, out: &Path) -> Result<usize> {
        use std::io::BufRead;
        let Some(path) = &self.samples else {
            bail!("generate naslib-zc needs --samples nas_bench_suite_zero_samples.jsonl.gz")
        };
        let progress: Arc<dyn crate::import::Progress> = Arc::new(crate::import::NoProgress);
        let mut written = 0;
        for (number, line) in crate::import::open_gz(path, "samples", &progress)?
            .lines()
            .enumerate()
        {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let sample = super::naslib::parse_sample(&line)
                .with_context(|| format!("{} line {}", path.display(), number + 1))?;
            let (space, task) = (
                sample["search_space"].as_str().unwrap_or_default(),
                sample["task"].as_str().unwrap_or_default(),
            );
            let model = super::naslib::sample_model(space, task, &sample)
                .with_context(|| format!("{} line {}", path.display(), number + 1))?;
            if let Some(model) = model {
                let file = format!("{space}-{task}-{}.onnx", number + 1);
                write_model(&model, out.join(file))?;
                written += 1;
            }
        }
        Ok(written)
    }
}
