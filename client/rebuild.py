"""`python -m client.rebuild`: the `rebuild-index` command (its code is in `client.cli`)."""

from client.cli import run_rebuild

if __name__ == "__main__":
    run_rebuild()
