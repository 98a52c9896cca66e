//! wrenn-client (placeholder; being written).
