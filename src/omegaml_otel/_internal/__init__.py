"""Internal: everything under this package may change without notice.

The public names are ``omegaml_otel.__all__`` and the public modules listed there."""
