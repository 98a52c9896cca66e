//! wrenn-envd (placeholder; being written).
