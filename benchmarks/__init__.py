"""`autodispatch bench`: load, latency and durability checks of the whole stack (see BENCHMARKS.md)."""
