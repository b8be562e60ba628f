"""What an op on a private tensor returns in public: its metadata (read by
tracing.py's privacy marks and indices.py's rewrite; a module of its own
so that neither imports the other)."""

METADATA = frozenset(
    {"size", "dim", "numel", "shape", "dtype", "device", "ndim", "ndimension"}
    | {"isnan", "isinf", "isfinite"}  # public: shares are finite
)
