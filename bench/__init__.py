"""The benchmark suite of issue 6: ``python -m bench [--quick] [--only P1,P3]``."""
