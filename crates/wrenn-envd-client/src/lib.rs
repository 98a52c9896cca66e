//! wrenn-envd-client (placeholder; being written).
