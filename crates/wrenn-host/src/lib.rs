//! wrenn-host (placeholder; being written).
