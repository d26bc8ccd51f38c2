"""prodml KFP components: ingest, validate, transform, train, evaluate, push, deploy."""
