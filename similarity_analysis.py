"""Rank a folder of images by similarity to a reference image (see `--help`)."""

from client.cli import run

if __name__ == "__main__":
    run()
