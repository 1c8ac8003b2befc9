"""Model stage: backbones (and the Lite0 port), image input, features, baselines, transfer learning."""
