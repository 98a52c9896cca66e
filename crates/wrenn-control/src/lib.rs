//! wrenn-control (placeholder; being written).
