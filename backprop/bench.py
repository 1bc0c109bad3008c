"""`backprop bench` (filled in by the benchmarking work)."""


def add_parser(sub) -> None:
    return None


def run(args, parser) -> int:
    return 0
