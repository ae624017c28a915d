"""datakit: build multilingual instruction-tuning corpora the way BayLing 2 did."""

__version__ = "0.4.0"
