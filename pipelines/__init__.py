"""prodml pipelines and the prodml command line."""
