"""Model stage: backbones (and the Lite0 port), image input, features, baselines, transfer learning."""

import os

# Before TensorFlow or JAX touch a GPU (both read these when they first initialise one): take GPU
# memory as needed instead of (nearly) all of it at start. The champion gate reloads a candidate
# in a second process on the same GPU (tasks.results.export_check), which would find none left.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
