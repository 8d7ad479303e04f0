"""Export: providers per process, and exporters into the embedded store or OTLP/HTTP."""
