"""What the instrumentors of this package instrument (checked by ``opentelemetry-instrument`` before loading)."""

_instruments = ("celery >= 5.3, < 6.0",)
