//! The PyTorch trainer (`python/archdb_torch`) as a child process: a training-set file in, JSON
//! progress lines forwarded, archdb's own artifact out (docs/gpu-trainer.md).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::ProgressFn;
use crate::predict::{Backend, EpochReport, PredictError, Predictor};

/// Which implementation trains predictors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trainer {
    /// archdb's own (candle; CUDA only in a `cuda` build).
    Rust,
    /// python/archdb_torch as a child process (PyTorch; CUDA when PyTorch sees a GPU).
    Torch,
}

/// How training runs (`archdb worker` and `archdb train` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainerOptions {
    #[arg(long, env = "ARCHDB_TRAINER", value_enum, default_value = "rust")]
    pub trainer: Trainer,
    /// Python interpreter with torch, numpy and safetensors, for `--trainer torch`.
    #[arg(long, env = "ARCHDB_TORCH_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// Directory that holds the `archdb_torch` package (the repository's `python/`).
    #[arg(long, env = "ARCHDB_TORCH_PACKAGE", default_value = "python")]
    pub torch_package: PathBuf,
}

impl Default for TrainerOptions {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            trainer: Trainer::Rust,
            python: "python3".into(),
            torch_package: "python".into(),
        }
    }
}

/// Trains with `python -m archdb_torch train` on a training-set file: its JSON progress lines
/// go to `progress` (returning false kills the trainer), its artifact is loaded as archdb's own.
pub(super) fn torch_train(
    options: &TrainerOptions,
    set: &[u8],
    progress: &mut ProgressFn,
) -> Result<Predictor> {
    let dir = std::env::temp_dir().join(format!(
        "archdb-torch-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = (|| {
        let (set_path, out, log) = (
            dir.join("set.safetensors"),
            dir.join("model.safetensors"),
            dir.join("stderr.log"),
        );
        std::fs::write(&set_path, set)?;
        let mut child = Command::new(&options.python)
            .args(["-m", "archdb_torch", "train", "--set"])
            .arg(&set_path)
            .arg("--out")
            .arg(&out)
            .env("PYTHONPATH", &options.torch_package)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", options.python.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        for line in BufReader::new(stdout).lines() {
            // Progress lines have a stage; the closing summary line and anything else do not.
            let Ok(line) = serde_json::from_str::<serde_json::Value>(&line?) else {
                continue;
            };
            if line.get("stage").is_none() {
                continue;
            }
            let report = match serde_json::from_value::<EpochReport>(line) {
                Ok(report) => report,
                Err(e) => {
                    child.kill()?;
                    child.wait()?;
                    bail!("the PyTorch trainer printed a malformed progress line: {e}");
                }
            };
            if !progress(&report) {
                child.kill()?;
                child.wait()?;
                return Err(PredictError::Cancelled.into());
            }
        }
        let status = child.wait()?;
        if !status.success() {
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = stderr.lines().collect();
            bail!(
                "the PyTorch trainer failed ({status}):\n{}",
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
        Predictor::load(&out, Backend::Cpu).context("loading the PyTorch-trained artifact")
    })();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::predict::Stage;

    /// A stand-in for the Python interpreter: a shell script with `body`.
    fn fake_python(name: &str, body: &str) -> TrainerOptions {
        let dir = std::env::temp_dir().join(format!("archdb-fake-python-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TrainerOptions {
            trainer: Trainer::Torch,
            python: path,
            torch_package: dir,
        }
    }

    #[test]
    fn torch_progress_is_forwarded_and_cancels_the_trainer() {
        let options = fake_python(
            "cancelled",
            r#"echo 'not progress'
echo '{"member": 1, "stage": "Regression", "epoch": 4, "loss": 0.5, "validation_kendall": 0.7, "seconds": 0.25}'
exec sleep 60"#,
        );
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut progress: ProgressFn = {
            let seen = seen.clone();
            Box::new(move |r| {
                seen.lock().unwrap().push(r.clone());
                false
            })
        };
        let started = Instant::now();
        let Err(error) = torch_train(&options, b"set", &mut progress) else {
            panic!("a cancelled training succeeded");
        };
        assert!(matches!(
            error.downcast_ref::<PredictError>(),
            Some(PredictError::Cancelled)
        ));
        assert!(
            started.elapsed().as_secs() < 30,
            "the trainer was not killed"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let r = &seen[0];
        assert_eq!(
            (r.member, r.stage, r.epoch, r.validation_kendall),
            (1, Stage::Regression, 4, Some(0.7))
        );
    }

    #[test]
    fn a_failing_torch_trainer_reports_its_stderr() {
        let options = fake_python(
            "failing",
            "echo 'ValueError: no labelled graphs' >&2; exit 3",
        );
        let mut progress: ProgressFn = Box::new(|_| true);
        let Err(error) = torch_train(&options, b"set", &mut progress) else {
            panic!("a failing trainer succeeded");
        };
        let message = format!("{error:#}");
        assert!(
            message.contains("failed") && message.contains("no labelled graphs"),
            "{message}"
        );
    }
}
