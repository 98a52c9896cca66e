//! wrenn-protocol (placeholder; being written).
