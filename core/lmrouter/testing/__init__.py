"""Testing kit for LMRouter and its plugin authors: fakes of upstream providers and helpers."""
