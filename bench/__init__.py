"""The benchmark suite: salad beside its peers on one machine (see bench/README.md)."""
