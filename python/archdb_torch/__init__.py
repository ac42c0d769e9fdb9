# SPDX-License-Identifier: Apache-2.0
"""PyTorch trainer and reference forward pass for archdb's accuracy predictor.

`archdb export-training-set` writes the graphs (per node) and the training settings; this package
trains on them (`python -m archdb_torch train`) and writes the very safetensors artifact archdb
serves, or predicts with an archdb artifact (`predict`, `parity`). See docs/gpu-trainer.md.
"""
