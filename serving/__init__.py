"""prodml serving: a KServe predictor for pushed models (serving environment)."""
