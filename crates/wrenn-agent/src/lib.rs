//! wrenn-agent (placeholder; being written).
