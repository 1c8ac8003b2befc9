"""The data audit on cached backbone features: near duplicates and label-issue candidates (tasks.audit.stage)."""
