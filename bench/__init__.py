"""StreamAVS benchmarks (installed as `streamavs.bench`); `results/` holds recorded runs."""
